"""docs/spec.md, the reference of the study spec, generated from the spec's own fields.

Every field of :class:`study.spec.StudySpec`, of the models it holds (``search``, ``early_stopping``,
``confirm``, ``resources``) and of the trial configuration under ``base`` (:class:`uwm_model.TrialConfig`
and its models) is listed with its type, default, description and an example: the field's own
``examples`` where it has them, else the value a shipped spec in ``tune_configs/`` gives it, else its
default. A field added to any of these models appears at the next generation; ``tests/test_spec_doc.py``
fails while the page is out of step with the code.

    python -m study.spec_doc            # rewrite docs/spec.md
    python -m study.spec_doc --check    # exit 1 when docs/spec.md is out of step
"""

from __future__ import annotations

import json
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from uwm_model.config import TrialConfig
from uwm_model.control import ControlConfig

from . import spec as spec_module
from .spec import StudySpec

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "spec.md"
SHIPPED = ROOT / "tune_configs"


def type_text(annotation: Any) -> str:
    """A field's type in words: 'int', 'list of int', 'one of: max, min', 'float or null', 'mapping (see ...)'."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_text(args[0])
    if origin is typing.Literal:
        return "one of: " + ", ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        kinds = [type_text(a) for a in args if a is not type(None)]
        return " or ".join(kinds) + (" or null" if type(None) in args else "")
    if origin is list:
        return f"list of {type_text(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping of name to {type_text(args[1])}" if args else "mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"mapping ({annotation.__name__})"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models a field holds (itself, in a union, a list or a mapping's values)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in models_in(arg)]


MAX_VALUE_CHARS = 60


def value_text(value: Any) -> str:
    """A value as it is written in a spec (JSON, which YAML reads as flow style), shortened past 60 characters."""
    value = to_jsonable_python(value)
    if isinstance(value, str) and value and spec_module.parse_value(value) == value:
        return value   # text the spec's loader reads back as this text needs no quotes
    text = json.dumps(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS - 4] + " ..."


def default_text(field) -> str:
    if field.is_required():
        return "required"
    if models_in(field.annotation) and not typing.get_origin(field.annotation):
        return "its fields' defaults" if field.default is not None else "null"
    if field.default_factory is not None:
        return value_text(field.default_factory())
    return value_text(field.default)


def shipped_values() -> dict[str, Any]:
    """Field path -> the first value a shipped spec gives it (``tune_configs/*.yaml``, in name order). Paths are
    dotted; entries of ``search``, grid axes and their joint values count for the field they set."""
    found: dict[str, Any] = {}

    def walk(value: Any, path: str) -> None:
        found.setdefault(path, value)
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(sub, f"{path}.{key}")
        elif isinstance(value, list):   # a list of mappings (probe.rules): its entries' fields
            for entry in value:
                if isinstance(entry, dict):
                    for key, sub in entry.items():
                        walk(sub, f"{path}.{key}")

    for file in sorted(SHIPPED.glob("*.yaml")):
        data = yaml.safe_load(file.read_text()) or {}
        for key, value in data.items():
            walk(value, key)
        for name, param in (data.get("search") or {}).items():   # search.<name>.<field> -> search.*.<field>
            walk(param, "search.*")
        for axis, values in (data.get("grid") or {}).items():    # a grid axis' first value is a base example
            first = values[0] if values else None
            for path, value in (spec_module.flatten_paths(first) if isinstance(first, dict) else {axis: first}).items():
                if spec_module.is_config_path(path):
                    found.setdefault(f"base.{path}", value)
    return found


def example_text(field, path: str, shipped: dict[str, Any]) -> str:
    if field.examples:
        return value_text(field.examples[0])
    if path in shipped:
        return value_text(shipped[path])
    return default_text(field) if not field.is_required() else ""


def sections(model: type[BaseModel], path: str, title: str) -> list[tuple[str, str, type[BaseModel]]]:
    """(title, path prefix, model) of ``model`` and of every model under it, depth first. The entries of a
    mapping of models (``search``) are ``<path>.*``; each model of a union gets its own section."""
    out = [(title, path, model)]
    for name, field in model.model_fields.items():
        subs = [m for m in models_in(field.annotation) if m is not model]
        sub_path = (f"{path}.{name}" if path else name) + (".*" if typing.get_origin(field.annotation) is dict else "")
        for sub in subs:
            out += sections(sub, sub_path, f"`{sub_path}`" + (f" ({sub.__name__})" if len(subs) > 1 else ""))
    return out


def table(model: type[BaseModel], path: str, shipped: dict[str, Any]) -> list[str]:
    rows = ["| field | type | default | description | example |", "|---|---|---|---|---|"]
    for name, field in model.model_fields.items():
        full = f"{path}.{name}" if path else name
        example = example_text(field, full, shipped)
        cells = [f"`{name}`", type_text(field.annotation), f"`{default_text(field)}`", field.description or "",
                 f"`{example}`" if example else "-"]
        rows.append("| " + " | ".join(c.replace("\n", " ").replace("|", "\\|") for c in cells) + " |")
    return rows


def markdown(text: str) -> str:
    """reStructuredText of a docstring as Markdown: ``code`` and :role:`target` as `code`."""
    return re.sub(r":\w+:`([^`]+)`", r"`\1`", text.replace("``", "`")).replace("Example::", "Example:")


def render() -> str:
    shipped = shipped_values()
    doc = spec_module.__doc__.split("\n\n")
    lines = ["# Study spec reference", "",
             "<!-- generated by `python -m study.spec_doc` from the fields of study/spec.py and uwm_model/config.py; "
             "do not edit: tests/test_spec_doc.py keeps it in step -->", "",
             "A study is one YAML file: `uwm-study check SPEC` validates it and prints its plan without starting "
             "anything; `uwm-study run SPEC` runs it. Start from [tune_configs/quickstart.yaml]"
             "(../tune_configs/quickstart.yaml); the study model (cells, points, packs) is in "
             "[study-model.md](study-model.md), the metrics a study can optimise in [metrics.md](metrics.md). "
             "Every value below can be overridden on the command line with `--set path=value` (read as YAML).", "",
             "## How a spec reads", ""]
    for part in doc:
        if part.startswith("    "):   # the docstring's example
            lines += ["```yaml", *(line[4:] for line in part.splitlines()), "```", ""]
        else:
            lines += [markdown(" ".join(part.split())), ""]
    control = ("`base` of a control study: the actor-critic (`task: {env: cartpole}` or `acrobot`; "
               "docs/learning-rules.md §9)")
    for title, path, model in [*sections(StudySpec, "", "Study fields"), *sections(TrialConfig, "base",
                                                                                  "`base`: the trial configuration"),
                               (control, "base", ControlConfig)]:
        lines += [f"## {title}", ""]
        if model.__doc__ and model.__module__ != "pydantic.main":
            lines += [markdown(" ".join(model.__doc__.split())), ""]
        lines += [*table(model, path, shipped), ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in argv:
        if not DOC.exists() or DOC.read_text() != text:
            print(f"{DOC.relative_to(ROOT)} is out of step with the spec's fields: run python -m study.spec_doc",
                  file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
