"""The CUDA path: CPU equals CUDA (float64, 1e-12) for streams, estimators, the trainer and packing;
compiled equals eager on CUDA; a P = 65 536 pack trains within its memory estimate.

Needs only torch, numpy and pydantic (``uwm_model``), so a bare GPU machine runs it:

    python -m pytest -q tests/test_gpu.py            # about two minutes on an H100, mostly compiling

Every check is a function of the device; without CUDA the CUDA tests skip and
``test_every_check_runs_on_the_cpu`` runs the same functions on the CPU at small sizes, so no line
here goes unexercised on a machine without a GPU.
"""

import pytest
import torch

import uwm_model as um
from uwm_model import memory, streams
from uwm_model.rules import RULES, resolve_rule

def cuda(test):
    """A CUDA check: marked ``cuda`` (``pytest -m cuda`` selects them) and skipped without a CUDA device."""
    return pytest.mark.cuda(pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")(test))

TOL = 1e-12


def config(device, **overrides):
    base = dict(task={"address_bits": 2}, hidden=[8, 4], rule="uwm", lr=0.03, batch_size=4, episodes=256,
                report_every=128, seeds=3, threshold=0.8, threshold_window=64, device=device, dtype="float64",
                compile="off", eval_episodes=64, probe={"enabled": True, "samples": 16, "cross_rule": True})
    base.update(overrides)
    return um.TrialConfig(**base)


def peak_bytes(device: torch.device) -> int | None:
    """Peak device memory allocated since the last reset (None on the CPU: not measurable per allocation)."""
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


# ----------------------------------------------------------------------------- checks (any device)


def check_streams(device: str) -> None:
    """Integer generator: bit-identical on both devices, in float32 and float64."""
    keys = streams.member_keys(torch.tensor([0, 1, 107, 2**31 + 5]), streams.TRAIN)
    counters = torch.tensor([0, 5, 770_353, 2**33 + 1])
    for dtype in (torch.float32, torch.float64):
        here = streams.uniforms(keys, counters, 301, dtype)
        there = streams.uniforms(keys.to(device), counters.to(device), 301, dtype)
        assert torch.equal(here, there.cpu())


def check_estimators(device: str) -> None:
    """Every rule's per-sample estimates on the same episode (drawn from the streams) agree."""
    cpu_trainer, dev_trainer = um.Trainer(config("cpu")), um.Trainer(config(device))
    outputs = []
    for trainer in (cpu_trainer, dev_trainer):
        weights, ep, reward, U = trainer._draw_episode(trainer.theta, trainer.train_keys, 3, 32, True)
        outputs.append([RULES[name].fn(weights, ep, reward, U, **resolve_rule(name, {})[1]) for name in RULES])
    for here, there in zip(*outputs):
        for a, b in zip(here, there):
            assert torch.allclose(a, b.cpu(), rtol=0, atol=TOL)


def reports_close(a, b) -> None:
    assert a.episode == b.episode
    for pa, pb in zip(a.points, b.points):
        for ra, rb in zip(pa.per_seed, pb.per_seed):
            assert ra.keys() == rb.keys()
            for key in ra:
                assert abs(ra[key] - rb[key]) <= TOL * max(1.0, abs(ra[key])), (key, ra[key], rb[key])


def check_trainer(device: str, **overrides) -> None:
    """The same training (reports with evaluation, probes and exact bias) on the CPU and on ``device``."""
    runs = []
    for where in ("cpu", device):
        trainer = um.Trainer(config(where, **overrides))
        runs.append((trainer, list(trainer.run())))
    (cpu, cpu_reports), (dev, dev_reports) = runs
    assert torch.allclose(cpu.theta, dev.theta.cpu(), rtol=0, atol=TOL)
    for a, b in zip(cpu_reports, dev_reports):
        reports_close(a, b)


def check_packing(device: str) -> None:
    """A packed member on ``device`` equals the same point trained alone on the CPU."""
    a = config(device, seed=0, seeds=2, lr=0.02)
    b = config(device, seed=7, seeds=2, lr=0.05, outgoing_norm=2.0)
    packed = um.Trainer([a, b])
    list(packed.run())
    alone = um.Trainer(b.model_copy(update={"device": "cpu"}))
    list(alone.run())
    assert torch.allclose(packed.theta[2:].cpu(), alone.theta, rtol=0, atol=TOL)


def check_compiled_equals_eager(device: str) -> None:
    common = dict(hidden=[4, 3], episodes=100, report_every=50, batch_size=2, seeds=2, probe={"enabled": False})
    eager, compiled = um.Trainer(config(device, **common)), um.Trainer(config(device, compile="on", **common))
    list(eager.run())
    list(compiled.run())
    assert compiled.compiled
    assert torch.allclose(eager.theta, compiled.theta, rtol=0, atol=1e-10)


def check_large_pack(device: str, seeds: int, rule: str, compile_mode: str) -> int | None:
    """A pack of ``seeds`` members (20-bit multiplexer, [64, 32], batch 8, float32) trains a few steps, with
    evaluation, within ``memory.member_bytes`` per member plus FIXED_BYTES. Returns the peak (CUDA)."""
    cfg = um.TrialConfig(task={"address_bits": 4}, hidden=[64, 32], rule=rule, lr=0.01, batch_size=8, episodes=64,
                         report_every=64, seeds=seeds, device=device, dtype="float32", compile=compile_mode,
                         eval_episodes=64, probe={"enabled": False})
    dev = torch.device(device)
    reset_peak(dev)
    trainer = um.Trainer(cfg)
    reports = list(trainer.run())
    assert reports[-1].episode == 64
    assert torch.isfinite(trainer.theta).all()
    peak = peak_bytes(dev)
    if peak is not None:
        assert peak <= seeds * memory.member_bytes(cfg) + memory.FIXED_BYTES, (peak / 2**30, "GiB")
    return peak


# ----------------------------------------------------------------------------- on CUDA


@cuda
def test_streams_cpu_equals_cuda():
    check_streams("cuda")


@cuda
def test_estimators_cpu_equal_cuda():
    check_estimators("cuda")


@cuda
@pytest.mark.parametrize("rule", ["uwm", "wm", "hwm", "reinforce", "ste"])
def test_trainer_cpu_equals_cuda(rule):
    check_trainer("cuda", rule=rule)


@cuda
def test_packing_is_invisible_on_cuda():
    check_packing("cuda")


@cuda
def test_compiled_equals_eager_on_cuda():
    check_compiled_equals_eager("cuda")


@cuda
@pytest.mark.parametrize("rule", ["uwm", "wm"])
def test_a_pack_of_65536_members_trains_within_its_memory_estimate(rule):
    peak = check_large_pack("cuda", 65_536, rule, "on")
    print(f"P=65536 batch 8 {rule} compiled: peak {peak / 2**30:.1f} GiB")


# ----------------------------------------------------------------------------- the same code on the CPU


@pytest.mark.slow
def test_every_check_runs_on_the_cpu():
    check_streams("cpu")
    check_estimators("cpu")
    check_trainer("cpu", episodes=64, report_every=32)
    check_packing("cpu")
    check_compiled_equals_eager("cpu")
    check_large_pack("cpu", 16, "uwm", "off")
