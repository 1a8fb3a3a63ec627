"""Mutation check: do the fast tests catch realistic one-line bugs?

Each mutation in ``mutations.py`` replaces one exact snippet of one source file in a temporary copy
of the tree (the working tree is never touched) and runs the fast tests named for it there. A
mutation is *killed* when those tests fail, *survives* when they pass, and is an *error* when its
snippet is not found exactly once (the list has gone stale: fix it, never count it as a pass).
Not collected by pytest (no ``test_*`` file here); run by hand, from the repository root:

    python tests/mutation/run.py                  # all mutations, sequentially
    python tests/mutation/run.py --only trainer   # names containing "trainer"
    python tests/mutation/run.py --list

Exit status 0 when every mutation was found and at least ``--min-kill`` (default 0.9) of them killed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from mutations import MUTATIONS  # noqa: E402


def copy_tree(dest: Path) -> None:
    """The tracked and untracked-but-not-ignored files of the working tree (no venvs, caches or runs)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def apply(tree: Path, mutation: dict) -> str | None:
    """Apply the mutation in ``tree``; the reason it cannot be applied, or None."""
    path = tree / mutation["file"]
    if not path.is_file():
        return f"no file {mutation['file']}"
    text = path.read_text()
    count = text.count(mutation["original"])
    if count != 1:
        return f"snippet found {count} times in {mutation['file']} (must be exactly once)"
    path.write_text(text.replace(mutation["original"], mutation["mutant"]))
    return None


def run_one(mutation: dict, timeout: float) -> tuple[str, float, str]:
    """(outcome, seconds, detail): killed, survived, error or timeout."""
    with tempfile.TemporaryDirectory(prefix="uwm-mutant-") as tmp:
        tree = Path(tmp)
        copy_tree(tree)
        problem = apply(tree, mutation)
        if problem:
            return "error", 0.0, problem
        env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
        cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *mutation["tests"]]
        tic = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return "timeout", time.perf_counter() - tic, f"tests ran past {timeout:.0f} s"
        seconds = time.perf_counter() - tic
        tail = (proc.stdout.strip().splitlines() or [""])[-1]
        if proc.returncode == 0:
            return "survived", seconds, tail
        if proc.returncode == 1:
            return "killed", seconds, tail
        if proc.returncode == 5:
            return "error", seconds, "no tests collected: check the mutation's test list"
        return "killed", seconds, f"pytest exit {proc.returncode} (import or collection error): {tail}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run the mutations whose name contains one of these (comma-separated)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per mutation's tests")
    parser.add_argument("--min-kill", type=float, default=0.9, help="required fraction killed")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if any(part in m["name"] for part in args.only.split(","))]
    if args.list:
        for m in chosen:
            print(f"{m['name']:40s} {m['file']}  tests: {' '.join(m['tests'])}")
        return 0
    if not chosen:
        print(f"no mutation matches --only {args.only!r}", file=sys.stderr)
        return 2
    results, start = [], time.perf_counter()
    for m in chosen:
        outcome, seconds, detail = run_one(m, args.timeout)
        results.append((m["name"], outcome))
        print(f"{outcome:9s} {seconds:6.1f} s  {m['name']}: {detail}", flush=True)
    killed = sum(o in ("killed", "timeout") for _, o in results)
    errors = [n for n, o in results if o == "error"]
    survivors = [n for n, o in results if o == "survived"]
    rate = killed / len(results)
    print(f"\nkilled {killed} of {len(results)} ({rate:.0%}); survived: {', '.join(survivors) or 'none'}; "
          f"errors: {', '.join(errors) or 'none'}; {time.perf_counter() - start:.0f} s")
    return 0 if not errors and rate >= args.min_kill else 1


if __name__ == "__main__":
    sys.exit(main())
