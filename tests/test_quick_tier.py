"""The quick tier, `./dev test -m "not slow"`, still reaches every module of the three packages: marking a
test slow must never leave a module that only slow tests touch. Read from the tests' source (no test is run):
a module is reached when a test not marked slow, a fixture it asks for or a helper of its file it calls, names
the module, something imported from it, or its dotted name in a string (a subprocess `-m study.cli`)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("uwm_model", "study", "analysis")
# modules no test names, run through another that the quick tier reaches (checked), or loaded from their file
INDIRECT = {
    "analysis.questions.": ("analysis.questions", "every question module is found and asked by questions.ask"),
    "uwm_model.envs.": ("uwm_model.envs", "every environment is registered in envs.ENVS and built by envs.make"),
    "study.plan": ("study.cli", "the plan and check commands import it"),
    "analysis.notebooks.regenerate": ("tests/test_notebooks.py", "loaded from its file (regenerate.py)"),
}


def project_modules() -> set[str]:
    names = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _is_slow(node: ast.expr) -> bool:
    """``pytest.mark.slow`` (or a list of marks holding it)."""
    if isinstance(node, (ast.List, ast.Tuple)):
        return any(_is_slow(e) for e in node.elts)
    return isinstance(node, ast.Attribute) and node.attr == "slow"


def _module_of(module: str, attr: str | None) -> str | None:
    """The project module that ``module.attr`` (or ``module`` itself) is, or defines it."""
    if module.split(".")[0] not in PACKAGES:
        return None
    if attr is not None:   # a submodule, imported or not yet
        try:
            return importlib.import_module(f"{module}.{attr}").__name__
        except ImportError:
            pass
    try:
        obj = importlib.import_module(module)
        if attr is not None:
            obj = getattr(obj, attr)
    except (ImportError, AttributeError):
        return None
    name = obj.__name__ if isinstance(obj, ModuleType) else getattr(obj, "__module__", None)
    return name if name and name.split(".")[0] in PACKAGES else None


def quick_reach(source: str, fixtures: dict[str, ast.FunctionDef] | None = None) -> set[str]:
    """The project modules that the tests of ``source`` not marked slow reach (see the module's docstring)."""
    tree = ast.parse(source)
    if any(isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "pytestmark" for t in n.targets)
           and _is_slow(n.value) for n in tree.body):
        return set()
    imported: dict[str, tuple[str, str | None]] = {}   # local name -> (module, attribute of it or None)
    functions = dict(fixtures or {})
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            functions[node.name] = node
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                imported[a.asname or a.name.split(".")[0]] = (a.name if a.asname else a.name.split(".")[0], None)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                imported[a.asname or a.name] = (node.module, a.name)
    todo = [f for name, f in functions.items() if name.startswith("test_")
            and not any(_is_slow(d.func if isinstance(d, ast.Call) else d) for d in f.decorator_list)]
    seen, reached = set(), set()
    while todo:
        f = todo.pop()
        if f.name in seen:
            continue
        seen.add(f.name)
        todo += [functions[a.arg] for a in f.args.args if a.arg in functions]   # the fixtures it asks for
        for node in ast.walk(f):
            if isinstance(node, ast.Name) and node.id in functions:
                todo.append(functions[node.id])
            elif isinstance(node, ast.Name) and node.id in imported:
                reached.add(_module_of(*imported[node.id]))
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in imported:
                module, attr = imported[node.value.id]
                reached.add(_module_of(f"{module}.{attr}" if attr else module, node.attr)
                            or _module_of(module, attr))
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                for a in node.names:
                    module = node.module if isinstance(node, ast.ImportFrom) else a.name
                    reached.add(_module_of(f"{module}.{a.name}", None) or _module_of(module, a.name
                                if isinstance(node, ast.ImportFrom) else None))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                reached.update(w for w in node.value.replace("/", ".").split() if w.split(".")[0] in PACKAGES)
    return reached - {None}


def _conftest_fixtures() -> dict[str, ast.FunctionDef]:
    tree = ast.parse((ROOT / "tests" / "conftest.py").read_text())
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def test_the_quick_tier_reaches_every_module():
    fixtures = _conftest_fixtures()
    reached = set()
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        reached |= quick_reach(path.read_text(), fixtures)
    for prefix, (via, why) in INDIRECT.items():
        if via.endswith(".py"):   # a test file that loads the module from its file
            source = (ROOT / via).read_text()
            assert prefix.rsplit(".", 1)[1] + ".py" in source and quick_reach(source, fixtures), (prefix, why)
        else:
            assert via in reached, f"{prefix} is reached through {via} ({why}), which no quick test reaches"
        reached |= {m for m in project_modules() if m.startswith(prefix)}
    missing = sorted(project_modules() - reached)
    assert not missing, f"modules that only tests marked slow reach (give each a quick test): {missing}"


def test_the_reach_counts_quick_tests_only_and_follows_fixtures_and_helpers():
    source = '''
import pytest
import uwm_model as um
from study.spec import StudySpec
from analysis import stats

@pytest.fixture
def trainer():
    return um.Trainer

def helper():
    return stats

def test_quick(trainer):
    helper()
    subprocess.run(["python", "-m", "study.cli"])

@pytest.mark.slow
def test_slow():
    StudySpec
'''
    assert quick_reach(source) == {"uwm_model", "uwm_model.trainer", "analysis.stats", "study.cli"}
    assert quick_reach("import pytest\npytestmark = [pytest.mark.slow]\nfrom analysis import stats\n"
                       "def test_a():\n    stats\n") == set()


def test_every_cluster_test_runs_in_the_ray_start_group():
    """The tests that start Ray nodes (marked cluster) run one at a time under pytest-xdist (conftest's
    xdist_group reads test ids, so a renamed test would silently leave the group)."""
    from conftest import xdist_group

    cluster = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and any(
                    isinstance(d, ast.Attribute) and d.attr == "cluster" for d in node.decorator_list):
                cluster.append(f"tests/{path.name}::{node.name}")
    assert len(cluster) >= 3, cluster
    assert {n: xdist_group(n) for n in cluster} == {n: "ray_start" for n in cluster}
