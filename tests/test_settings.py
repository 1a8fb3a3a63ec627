"""Process-wide torch settings (uwm_model/settings.py): an eager trial never pays for loading torch's compiler,
and a compiling trainer gets its cache size."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

EAGER = """
import sys
from uwm_model.settings import torch_settings
from uwm_model.config import TrialConfig
from uwm_model.trainer import Trainer
torch_settings(threads=1, device="cpu")
cfg = TrialConfig(rule="uwm", hidden=[4], episodes=40, report_every=20, eval_episodes=8, seeds=2, compile="off",
                  task={"address_bits": 1})
for _ in Trainer([cfg]).run():
    pass
print("torch._dynamo" in sys.modules)
"""

COMPILED = """
import torch
from uwm_model.settings import torch_settings
from uwm_model.config import TrialConfig
from uwm_model.trainer import Trainer
torch_settings(threads=1, device="cpu")
cfg = TrialConfig(rule="reinforce", hidden=[2], episodes=8, report_every=8, eval_episodes=4, seeds=1, compile="on",
                  task={"address_bits": 1}, probe={"enabled": False})
trainer = Trainer([cfg])
for _ in trainer.run():
    pass
print(trainer.compiled, torch._dynamo.config.cache_size_limit)
"""


def run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.split()


def test_an_eager_trainer_never_loads_the_compiler():
    assert run(EAGER) == ["False"]


@pytest.mark.slow
def test_a_compiling_trainer_raises_the_compile_cache():
    assert run(COMPILED) == ["True", "64"]
