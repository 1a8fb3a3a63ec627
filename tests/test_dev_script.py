"""`./dev` never re-points an environment that belongs to another checkout (UWM_VENV shared between clones)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def checkout(tmp_path: Path, name: str) -> Path:
    """A checkout's entry point: the dev script beside a pyproject.toml (the stamp's reference)."""
    folder = tmp_path / name
    folder.mkdir()
    shutil.copy2(ROOT / "dev", folder / "dev")
    shutil.copy2(ROOT / "pyproject.toml", folder / "pyproject.toml")
    return folder


def environment(tmp_path: Path, owner: Path | None) -> Path:
    """An installed environment: its python is this test's interpreter (torch importable), its install stamp
    is newer than pyproject.toml, and ``owner`` (if any) is the checkout it records."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text(f"#!/bin/sh\nexec {os.path.abspath(sys.executable)} \"$@\"\n")
    (venv / "bin" / "python").chmod(0o755)
    (venv / ".uwm-installed").touch()
    if owner is not None:
        (venv / ".uwm-checkout").write_text(f"{owner}\n")
    return venv


def dev(folder: Path, venv: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(folder / "dev"), *args], env={**os.environ, "UWM_VENV": str(venv)},
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_an_environment_of_another_checkout_is_refused_before_anything_is_installed(tmp_path):
    first, second = checkout(tmp_path, "first"), checkout(tmp_path, "second")
    venv = environment(tmp_path, first)
    out = dev(second, venv, "python", "-c", "print('ran')")
    assert out.returncode == 2 and "ran" not in out.stdout, out
    assert out.stderr.strip().splitlines() == [
        f"error: ./dev: the environment {venv} belongs to the checkout {first}, not {second}: unset UWM_VENV (this "
        "checkout then makes its own .venv) or point it at a new folder"]
    assert (venv / ".uwm-checkout").read_text().strip() == str(first)
    # its own checkout uses it as before
    out = dev(first, venv, "python", "-c", "print('ran')")
    assert out.returncode == 0 and out.stdout == "ran\n", out


def test_an_environment_made_before_the_record_belongs_where_its_editable_install_points(tmp_path):
    """No record: the owner is the folder uwm-study's editable install points at (this test's own environment's:
    the repository), so another checkout is refused, and the repository's own ./dev records it."""
    other = checkout(tmp_path, "other")
    venv = environment(tmp_path, None)
    out = dev(other, venv, "python", "-c", "print('ran')")
    assert out.returncode == 2 and "belongs to the checkout" in out.stderr and "ran" not in out.stdout, out
    assert not (venv / ".uwm-checkout").exists()
