"""Fuzz of the spec loader: a few hundred malformed specs, each one line, exit 2, fast and small.

Every case is generated (seeded) from a valid tiny spec by one mutation of a kind a user or a
hostile file can produce: wrong types, unknown keys, duplicate keys, encodings, sizes, aliases and
tags. Each must give exactly one line on stderr starting with ``error:``, exit code 2, in under 5 s
and under 200 MB, and create nothing: no Ray, no MLflow store, no results folder.

Time, as measured here: in-process, the wall time of ``study.cli.main`` on the case (modules already
imported) while tracemalloc traces it (an upper bound: tracing slows the pure-Python YAML parser about
4x), timed again untraced when that reaches the limit. Memory: in-process, the peak of Python's traced
allocations (tracemalloc) while ``study.cli.main`` handles the case; through a real subprocess, the
child's peak resident set size (ru_maxrss) above that of a child that fails on the smallest possible
error (same imports).
"""

from __future__ import annotations

import copy
import os
import random
import subprocess
import sys
import time
import tracemalloc

import pytest
import yaml

from study.cli import main

BASE = {"name": "fuzz",
        "base": {"task": {"address_bits": 1}, "hidden": [4], "seeds": 2, "episodes": 400, "report_every": 100,
                 "eval_episodes": 32, "compile": "off", "probe": {"enabled": False}},
        "grid": {"rule": ["uwm", "hwm"]},
        "search": {"lr": {"low": 1e-3, "high": 0.1, "log": True}},
        "samples_per_cell": 2,
        "early_stopping": {"grace_period": 100},
        "resources": {"cpus": 1}}

# (path, values no such field accepts)
WRONG = {
    ("name",): [["a"], {"a": 1}, "", "has space", "x" * 200, 3, None],
    ("seed",): ["zero", -1, True, [0], 1.5],
    ("samples_per_cell",): [0, -3, "two", True, 1e9, [2], None, 2.5],
    ("metric",): ["accuracy", 3, ["eval_reward_mean"]],
    ("mode",): ["maximum", 1, None],
    ("pack_size",): [0, "big", True, -1, [4]],
    ("max_failures",): [-1, "x", 10**6],
    ("max_concurrent",): [0, "all", 10**9],
    ("grid",): [[1, 2], "rule", {"rule": []}, {"rule": "uwm"}, {"nope": [1]}, {"hidden": [[-1]]}, {"rule": ["sgd"]}],
    ("search",): [[1], "lr", {"lr": {"low": 1, "high": 0}}, {"lr": {"low": 0, "high": 1, "log": True}},
                  {"hidden": {"low": 1, "high": 2}}, {"lr": {"choices": [1]}}, {"lr": {"low": "a", "high": 1}}],
    ("early_stopping",): [{"grace_period": 0}, {"kind": "hyperband", "grace_period": 1}, 5, {"reduction_factor": 1, "grace_period": 3}],
    ("resources",): [{"cpus": 0}, {"cpus": "two"}, {"gpus": -1}, {"cpus": True}, {"cpus": 10**6}, {"wait_timeout_s": 0}],
    ("base", "episodes"): [0, -5, "many", 1e12, True, 1.5, None, [400]],
    ("base", "seeds"): [0, True, "2", 10**7, -2],
    ("base", "hidden"): [[], [0], [-4], "4", [True], [100_000_000], 4, [[4]]],
    ("base", "rule"): ["sgd", 5, ["uwm"], None],
    ("base", "lr"): [-1.0, "fast", float("inf"), [0.1, 0.1, 0.1, 0.1], True],
    ("base", "batch_size"): [0, 3, "1", 10**8],
    ("base", "report_every"): [0, 7000, "often", True],
    ("base", "device"): ["gpu", "cuda", "cuda:x", 0, "tpu"],
    ("base", "dtype"): ["float16", 32, None],
    ("base", "task"): [{"address_bits": 0}, {"address_bits": 9}, "mux", {"name": "parity"}, {"address_bits": True}],
    ("base", "threshold"): [2.0, "high", [0.9]],
    ("base", "probe"): [{"samples": 1}, {"enabled": "maybe"}, [], {"samples": 10**9}],
    ("base", "compile"): ["sometimes", 3, [True]],
    ("base", "baseline"): ["mean", 1, True],
}
KEYS = ["nmae", "sead", "samples_per_cel", "serach", "gird", "extra", "Name", "base ", "1", "-", "a.b", "ünïcode"]


def cases(rng: random.Random) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    dump = lambda d: yaml.safe_dump(d, sort_keys=False).encode()   # noqa: E731
    # types: every listed wrong value, in place
    for path, values in WRONG.items():
        for value in values:
            spec = copy.deepcopy(BASE)
            node = spec
            for part in path[:-1]:
                node = node[part]
            node[path[-1]] = value
            out.append((f"type {'.'.join(path)}={str(value)[:30]}", dump(spec)))
    # unknown keys at every level that forbids them
    for key in KEYS:
        for where in ((), ("base",), ("base", "task"), ("base", "probe"), ("search", "lr"), ("resources",),
                      ("early_stopping",)):
            spec = copy.deepcopy(BASE)
            node = spec
            for part in where:
                node = node[part]
            node[key] = rng.choice([1, "x", [1], {"a": 1}])
            out.append((f"unknown {'.'.join(where) or 'top'}.{key}", dump(spec)))
    # duplicate keys, at the top and nested, equal or different values
    text = dump(BASE).decode()
    for line in [ln for ln in text.splitlines() if ":" in ln]:
        indent = line[: len(line) - len(line.lstrip())]
        i = text.index(line + "\n") + len(line) + 1
        out.append((f"duplicate {line.strip()[:30]}", (text[:i] + line + "\n" + text[i:]).encode()))
        out.append((f"duplicate-other {line.strip()[:30]}",
                    (text[:i] + indent + line.strip().split(":")[0] + ": 7\n" + text[i:]).encode()))
    # encodings
    raw = dump(BASE)
    for n in range(12):
        at = rng.randrange(len(raw))
        out.append((f"encoding invalid byte at {at}", raw[:at] + bytes([rng.choice([0x80, 0xC0, 0xFE, 0xFF, 0xE9])]) + raw[at:]))
    out.append(("encoding utf-16", text.encode("utf-16")))
    out.append(("encoding utf-32", text.encode("utf-32")))
    out.append(("encoding latin-1 name", text.replace("fuzz", "füzz").encode("latin-1")))
    out.append(("encoding NUL", raw[:20] + b"\x00" + raw[20:]))
    out.append(("encoding binary", bytes(rng.randrange(256) for _ in range(4096))))
    out.append(("encoding empty", b""))
    out.append(("encoding BOM only", "\ufeff".encode()))
    # sizes
    out.append(("size 2 MiB comment", raw + b"#" + b"x" * (2 << 20) + b"\n"))
    out.append(("size 1 MiB + 1 description", dump({**BASE, "description": "d" * (1 << 20)})))
    out.append(("size nesting 1000", ("base:\n  probe: " + "[" * 1000 + "]" * 1000 + "\nname: x\n").encode()))
    out.append(("size nesting 150 maps", ("name: x\nbase: " + "{a: " * 150 + "1" + "}" * 150 + "\n").encode()))
    out.append(("size grid 20000 values", dump({**BASE, "grid": {"outgoing_norm": [1.0 + i for i in range(20_000)]}})))
    out.append(("size grid 10^8 cells", dump({**BASE, "grid": {f"a{i}": [{"outgoing_norm": 1 + j} for j in range(10)]
                                                               for i in range(8)}})))
    out.append(("size 10^5 search keys", dump({**BASE, "search": {f"k{i}": {"low": 0, "high": 1} for i in range(5000)}})))
    # aliases: billion laughs in several places, and a self-referencing anchor
    for where in ("grid:\n  hidden:\n  - *l9", "base:\n  hidden: *l9", "search:\n  lr:\n    choices: *l9",
                  "description: *l9", "grid:\n  method:\n  - {rule_options: *l9}"):
        bomb = "a0: &l0 [1]\n" + "".join(f"a{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]\n" for i in range(1, 10))
        out.append((f"alias bomb {where.split(':')[0]}", ("name: x\n" + bomb + where + "\n").encode()))
    out.append(("alias recursive", b"name: x\nbase: &a {hidden: *a}\n"))
    out.append(("alias undefined", b"name: x\nbase: *nowhere\n"))
    # tags
    for tag in ("!!python/object:os.system", "!!python/object/apply:os.system ['true']", "!!python/name:os.system",
                "!!python/tuple [1, 2]", "!!binary aGVsbG8=", "!custom 3", "!!set {a, b}", "!!omap [{a: 1}]",
                "!!timestamp 2001-12-14", "!!float nan", "!!int '12x'", "!!str 3"):
        out.append((f"tag {tag.split()[0]}", f"name: x\nsamples_per_cell: {tag}\n".encode()))
    # not mappings, broken syntax
    for text_ in ("- a\n- b\n", "just text\n", "42\n", "name: [unclosed\n", "name: x\n  bad: indent\n",
                  "{name: x, base: {hidden: [4,]]}\n", "name: x\n\tbase: {}\n", "? [a, b]\n: 1\n", "name: x\nbase: null\nbase2:"):
        out.append((f"syntax {text_[:20]!r}", text_.encode()))
    # random single-character corruption of a valid spec
    for n in range(60):
        at = rng.randrange(len(text))
        bad = text[:at] + rng.choice(["{", "]", ":", "&x ", "*x", "!!", "'", '"', "\t", "%"]) + text[at + 1:]
        out.append((f"corrupt {n}", bad.encode()))
    return out


@pytest.mark.slow
def test_every_malformed_spec_is_one_line_exit_2_fast_small_and_starts_nothing(tmp_path, capsys):
    from study.spec import load_yaml_text, validate_spec

    validate_spec(copy.deepcopy(BASE))   # the seed of every mutation is valid
    generated = cases(random.Random(13))
    db, runs = tmp_path / "mlflow.db", tmp_path / "runs"
    worst_s, worst_b, bad, skipped = (0.0, ""), (0, ""), [], 0
    path = tmp_path / "spec.yaml"
    path.write_text("name: 1\n")   # the first call imports the CLI's modules (Ray, MLflow): not a case's cost
    assert main(["run", str(path), "--tracking-uri", f"sqlite:///{db}", "--storage", str(runs)]) == 2
    for label, content in generated:
        path.write_bytes(content)
        if label.startswith("corrupt"):   # a corruption that happens to leave a valid spec is not malformed: not run
            try:
                validate_spec(load_yaml_text(content.decode(), "spec"))
                skipped += 1
                continue
            except Exception:   # noqa: BLE001 - malformed as intended
                pass
        argv = ["run", str(path), "--tracking-uri", f"sqlite:///{db}", "--storage", str(runs)]
        capsys.readouterr()
        tracemalloc.start()
        t0 = time.perf_counter()
        code = main(argv)
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        err = capsys.readouterr().err.strip()
        if elapsed >= 5:   # tracemalloc slows the pure-Python YAML parser ~4x: time such a case again, untraced
            t0 = time.perf_counter()
            main(argv)
            elapsed = time.perf_counter() - t0
            capsys.readouterr()
        worst_s, worst_b = max(worst_s, (elapsed, label)), max(worst_b, (peak, label))
        if not (code == 2 and err.startswith("error: ") and "\n" not in err and elapsed < 5 and peak < 200e6):
            bad.append((label, code, err[:300], round(elapsed, 2), peak))
    assert not db.exists() and not runs.exists()
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
    tried = len(generated) - skipped
    print(f"\nspec fuzz: {tried} malformed specs tried, {tried - len(bad)} clean ({skipped} corruptions left a valid "
          f"spec, not run); worst time {worst_s[0]:.2f} s ({worst_s[1]}), worst traced memory "
          f"{worst_b[0] / 2**20:.1f} MiB ({worst_b[1]})")
    assert tried >= 300 and not bad, bad[:10]


def _child(path, tmp_path) -> tuple[int, str, float, int]:
    """A real `uwm-study run` process: (exit code, stderr, seconds, peak RSS in bytes)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "study.cli", "run", str(path), "--tracking-uri",
                             f"sqlite:///{tmp_path / 'mlflow.db'}", "--storage", str(tmp_path / "runs")],
                            stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, err.strip(), time.perf_counter() - t0, usage.ru_maxrss * 1024


@pytest.mark.slow
def test_a_handful_of_malformed_specs_through_a_real_process(tmp_path):
    generated = dict(cases(random.Random(13)))
    (tmp_path / "floor.yaml").write_bytes(b"name: 1\n")
    code, err, _, floor = _child(tmp_path / "floor.yaml", tmp_path)
    assert code == 2 and err.startswith("error: name"), err
    # the kinds whose cost a real process could hide from the in-process run (the C parts of YAML, decoding,
    # torch's allocator), each a few seconds of imports: the rest run in-process above
    picks = ["alias bomb grid", "size 2 MiB comment", "encoding invalid byte", "tag !!python/object/apply:os.system",
             "type base.hidden=[100000000]"]
    worst = (0.0, 0)
    for label in picks:
        key = next(k for k in generated if k.startswith(label))
        path = tmp_path / "spec.yaml"
        path.write_bytes(generated[key])
        code, err, seconds, rss = _child(path, tmp_path)
        assert code == 2 and err.startswith("error: ") and "\n" not in err, (key, code, err[-2000:])
        assert rss - floor < 200e6, (key, rss, floor)
        worst = (max(worst[0], seconds), max(worst[1], rss - floor))
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "runs").exists()
    print(f"\nsubprocess fuzz: {len(picks)} cases, worst {worst[0]:.1f} s wall (with imports), "
          f"worst peak RSS {worst[1] / 2**20:.1f} MiB above the {floor / 2**20:.0f} MiB of a one-line error")
