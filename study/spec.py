"""StudySpec: one YAML file describes a whole study, validated before anything starts.

A study is a base :class:`uwm_model.TrialConfig`, a **grid** of discrete axes whose product
gives the *cells*, and a **search** space of numeric hyperparameters that Optuna (TPE, seeded)
samples ``samples_per_cell`` times *within each cell*, so every cell gets its own tuned
learning rate. Example::

    name: demo
    base: {task: {address_bits: 2}, hidden: [16, 16], episodes: 4000, report_every: 1000, seeds: 4}
    grid:
      method:                          # a joint axis: each value sets several fields at once
        - {rule: reinforce, baseline: ema}
        - {rule: hwm, rule_options: {order: 3}}
        - {rule: uwm}
      hidden: [[16, 16], [64, 64]]     # a plain axis: a TrialConfig path and its values
    search:
      lr: {low: 1.0e-4, high: 0.1, log: true}
    samples_per_cell: 8

Grid axes. An axis whose name is a TrialConfig path (``rule``, ``hidden``, ``outgoing_norm``,
``rule_options.order``, ``task.address_bits``, ...) lists values for that path. Any other
name is a *joint* axis: each of its values is a mapping of paths to values applied together
(nested mappings are read as dotted paths, so ``{rule_options: {order: 3}}`` sets
``rule_options.order``). Every cell's configuration is validated up front, so a value that
makes an invalid TrialConfig fails before anything starts, naming the axis and the cell.

Search. Keys are TrialConfig paths of *per-member* fields (``lr``, ``outgoing_norm``,
``baseline_decay``, ``adam_beta1``, ``rule_options.p``, ...: the fields that may differ
between the points trained together in one population); shape-fixing fields belong in the
grid. ``lr`` with ``per_layer: true`` samples one learning rate per layer.

Control tasks. A base whose ``task`` is ``{env: cartpole}`` (or ``acrobot``) makes a control study: its
trial configuration is :class:`uwm_model.control.ControlConfig` in a control trial file's form, validated by
the control trial's own code (:mod:`study.control_trial`). The grid may vary ``task.env``; the search only
``lr`` (the actor's first-layer starting rate, its whole schedule scaled with it) and ``threshold``; early
stopping does not apply.

The cell key names a cell in trackers and tables: ``path=value`` for every path the grid sets,
in axis order, joined by ``|`` (``rule=uwm|hidden=[64, 64]|outgoing_norm=4.0``), with the
values as the validated TrialConfig holds them.

YAML is read with a safe loader that also reads ``1e-4`` as a number (plain YAML 1.1 reads it
as a string) and refuses what would only hide a mistake or exhaust the machine: duplicate keys,
files that are not UTF-8 text or larger than 1 MiB, nesting deeper than 100 levels, and aliases
that expand to more than 100 000 values.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from uwm_model import layout, metrics
from uwm_model.config import TrialConfig, per_member_fields, refuse_booleans
from uwm_model.control import CONTROL_PER_MEMBER_FIELDS, ControlConfig
from uwm_model.rules import RULES

from .control_trial import is_control, validate_control
from .errors import UserError, from_validation_error

# ----------------------------------------------------------------------------- YAML


MAX_YAML_BYTES = 1 << 20      # a spec or trial config is a few KB; a megabyte is already absurd
MAX_YAML_NODES = 100_000      # values after expanding aliases: bounds what any later walk can cost
MAX_YAML_DEPTH = 100
MAX_SAMPLES_PER_CELL = 10_000  # Optuna's TPE is far past any benefit long before this
MAX_CELLS = 10_000            # grid product: each cell is validated up front and tuned separately


class _TooDeep(yaml.YAMLError):
    pass


class _Loader(yaml.SafeLoader):
    """yaml.SafeLoader that reads exponent floats without a dot (``1e-4``) as floats and refuses
    duplicate keys in a mapping (plain YAML keeps the last one silently)."""

    def compose_node(self, parent, index):
        # refuse deep nesting while composing: the composer and constructor recurse once per level
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _TooDeep()
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue             # keys merged in with << may be overridden on purpose
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:        # an unhashable key: SafeLoader reports it
                    continue
                if first is not key_node:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key '{key}' (first at line {first.start_mark.line + 1})",
                        key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _check_size(data: Any, where: str) -> None:
    """Count the values of loaded YAML as every later walk will see them (an alias repeats its target),
    stopping at the budget: a few lines of nested aliases ("billion laughs") cost nothing to load
    but would expand to billions of values in json.dumps or deepcopy."""
    budget, stack = MAX_YAML_NODES, [(data, 0)]
    while stack:
        value, depth = stack.pop()
        budget -= 1
        if budget < 0:
            raise UserError(where, f"the YAML expands to more than {MAX_YAML_NODES:,} values "
                                   "(anchors and aliases nested inside each other?)")
        if depth > MAX_YAML_DEPTH:
            raise UserError(where, f"the YAML is nested more than {MAX_YAML_DEPTH} levels deep")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
            stack.extend((k, depth + 1) for k in value if isinstance(k, tuple))
        elif isinstance(value, (list, tuple)):
            stack.extend((v, depth + 1) for v in value)


def load_yaml_text(text: str, where: str) -> Any:
    """Plain data from YAML text with a safe loader; every problem is one UserError naming ``where``."""
    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader: builds plain data only
    except _TooDeep:
        raise UserError(where, f"the YAML is nested more than {MAX_YAML_DEPTH} levels deep") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f"{where}:{mark.line + 1}" if mark else where
        raise UserError(at, f"invalid YAML: {getattr(err, 'problem', None) or err}") from None
    except RecursionError:
        raise UserError(where, f"the YAML is nested more than {MAX_YAML_DEPTH} levels deep") from None
    except (ValueError, TypeError, OverflowError) as err:   # a tagged scalar the loader cannot build: !!int '12x'
        raise UserError(where, f"invalid YAML value: {err}") from None
    _check_size(data, where)
    return data


def read_yaml(path: str | Path, what: str = "spec") -> dict:
    """A YAML mapping from a file; a missing, oversized, non-UTF-8 or invalid file is a UserError naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(str(path), f"no such {what} file")
    size = path.stat().st_size
    if size > MAX_YAML_BYTES:
        raise UserError(str(path), f"a {what} file of {size:,} bytes is too large (at most {MAX_YAML_BYTES:,})")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}", f"not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}); "
                                          "save the file as UTF-8") from None
    if "\x00" in text:
        raise UserError(str(path), f"a {what} file must be text, but it contains NUL bytes")
    data = load_yaml_text(text.removeprefix("\ufeff"), str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(str(path), f"a {what} must be a YAML mapping, not {type(data).__name__}")
    return data


def parse_value(text: str) -> Any:
    """A ``--set`` value, read as YAML (``3``, ``1e-3``, ``[8, 8]``, ``uwm``); text that is not YAML stays text."""
    try:
        return load_yaml_text(text, "--set")
    except UserError as err:
        if "invalid YAML" in err.problem:
            return text
        raise


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """``key.sub=value`` overrides (``--set``) applied to a raw mapping; values are read as YAML."""
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError("--set", f"expected key=value, got {item!r}")
        set_path(data, key.strip(), parse_value(value))
    return data


# ----------------------------------------------------------------------------- paths


def get_path(data: dict, path: str) -> Any:
    for part in path.split("."):
        data = data[part]
    return data


def set_path(data: dict, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        child = data.get(part)
        if not isinstance(child, dict):
            child = data[part] = {}
        data = child
    data[last] = copy.deepcopy(value)


def flatten_paths(mapping: dict, prefix: str = "") -> dict[str, Any]:
    """{'rule_options': {'order': 3}} -> {'rule_options.order': 3}; empty mappings stay values."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten_paths(value, path))
        else:
            out[path] = value
    return out


def check_path(path: str, control: bool = False) -> None:
    """Raise ValueError unless ``path`` names a field of TrialConfig (of ControlConfig for a control study: its
    environment is ``task.env``), any key under rule_options."""
    model: type[BaseModel] = ControlConfig if control else TrialConfig
    if control and path.split(".")[0] == "task":
        if path != "task.env":
            raise ValueError("a control task has only env (task.env: cartpole or acrobot)")
        return
    if path == "task.env":
        raise ValueError("a control study names its environment in the base (base.task.env); the grid may then vary it")
    parts = path.split(".")
    for i, part in enumerate(parts):
        fields = model.model_fields
        if part not in fields:
            where = ".".join(parts[:i]) or model.__name__
            raise ValueError(f"'{part}' is not a field of {where} (fields: {', '.join(fields)})")
        if i == len(parts) - 1:
            return
        annotation = fields[part].annotation
        # an optional section (``fan_out: FanOutConfig | None``) has the sub-fields of its model
        models = [a for a in (annotation, *get_args(annotation)) if isinstance(a, type) and issubclass(a, BaseModel)]
        if models:
            model = models[0]
        elif part == "rule_options" and i == len(parts) - 2:
            return  # the rule checks its own options
        else:
            raise ValueError(f"'{'.'.join(parts[: i + 1])}' has no sub-fields")


def config_fields(control: bool = False) -> list[str]:
    """The top-level fields of a study's trial configuration (a control study's: ControlConfig's and task)."""
    return [*ControlConfig.model_fields, "task"] if control else list(TrialConfig.model_fields)


def is_config_path(name: str, control: bool = False) -> bool:
    return name.split(".")[0] in config_fields(control)


def format_value(value: Any) -> str:
    """A value as it appears in cell keys: strings bare, everything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


# ----------------------------------------------------------------------------- the spec

def is_study_metric(name: str) -> bool:
    """Whether a study can optimise ``name``: what a point reports (docs/metrics.md: per seed aggregated, per
    point) or what the study writes for it (auc_reward_mean)."""
    return metrics.is_point_metric(name) or name == layout.AUC_REWARD


def searchable_fields(control: bool = False) -> tuple[str, ...]:
    """Per-member hyperparameters (they may differ within one population); seeds and labels are not searched."""
    fields = CONTROL_PER_MEMBER_FIELDS if control else per_member_fields()
    return tuple(f for f in fields if f not in ("seed", "seeds", "name"))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans(cls, value, info):
        return refuse_booleans(cls, info.field_name, value)


class SearchParam(_Strict):
    """One hyperparameter sampled by Optuna within each cell."""

    type: Literal["float", "int", "categorical"] = Field("float", description="float, int or categorical")
    low: float | None = Field(None, description="lower bound (float and int)")
    high: float | None = Field(None, description="upper bound, inclusive (float and int)")
    log: bool = Field(False, description="sample on a log scale (low must be > 0)")
    step: float | None = Field(None, gt=0, description="discretisation step (optional, not with log)")
    choices: list[Any] | None = Field(None, min_length=1, description="values of a categorical parameter")
    per_layer: bool = Field(False, description="lr only: sample one learning rate per layer (names lr.l1, lr.l2, ...)")

    @model_validator(mode="after")
    def _check(self):
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs `choices`")
            if self.low is not None or self.high is not None or self.log or self.step is not None:
                raise ValueError("a categorical parameter takes `choices` only, not low/high/log/step")
            return self
        if self.choices is not None:
            raise ValueError(f"`choices` needs type: categorical (this parameter is {self.type})")
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} parameter needs `low` and `high`")
        if not self.low < self.high:
            raise ValueError(f"low={self.low} must be below high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0; got low={self.low}")
        if self.log and self.step is not None:
            raise ValueError("`step` cannot be combined with `log`")
        if self.type == "int" and not (float(self.low).is_integer() and float(self.high).is_integer()):
            raise ValueError("an int parameter needs integer low and high")
        return self

    def corners(self) -> list[Any]:
        """Values that bound what Optuna can propose (checked against every cell up front)."""
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int":
            return [int(self.low), int(self.high)]
        return [self.low, self.high]


class EarlyStopping(_Strict):
    """Member-level early stopping: points stop, their packs train on (see study.stopping)."""

    kind: Literal["asha", "median"] = Field("asha", description="asha: keep the top 1/reduction_factor at each rung; "
                                                                "median: stop a point below the median of its rung")
    grace_period: int = Field(ge=1, description="episodes before the first rung (rungs at grace_period * reduction_factor^k)")
    reduction_factor: float = Field(3.0, gt=1, description="ASHA's eta: rung spacing and the fraction 1/eta kept")
    min_points: int = Field(3, ge=1, description="points a rung must have seen before it stops anyone")


class Confirm(_Strict):
    """Re-run the best configuration(s) of every cell with fresh seeds once its search is done."""

    top_k: int = Field(1, ge=1, le=MAX_SAMPLES_PER_CELL, description="best points per cell to confirm")
    seeds: int = Field(10, ge=1, le=65_536, description="members (seeds) per confirm run")
    seed_offset: int = Field(10_000, ge=1, description="first confirm seed = base seed + seed_offset (fresh seeds)")


class Resources(_Strict):
    """Resources that one trial (one pack) holds on a Ray node."""

    cpus: float = Field(1.0, gt=0, le=1024, description="CPU cores a trial holds; its trainer uses base.threads of them "
                                               "(default 1: several one-thread trials use the cores best)")
    gpus: float = Field(0.0, ge=0, le=64, description="GPUs per trial, fractional allowed (e.g. 0.25 runs four packs per GPU); "
                                               "a trial that finds no CUDA device (base.device auto) trains on its CPUs")
    wait_timeout_s: float = Field(600.0, gt=0, description="on a cluster joined with --address where no live node can "
                                                          "hold a trial: seconds to wait for one (an autoscaler adding "
                                                          "it) before giving up; a local Ray refuses such a trial up front")
    gpu_memory_gib: float | None = Field(None, gt=0, description="memory of one GPU of the cluster, for pack_size auto "
                                                                 "(default: the driver's first CUDA device, else 80)")
    max_trial_hours: float = Field(24.0, gt=0, description="refuse a study, before it starts, when one trial (one pack) "
                                                           "would need more hours than this even at the fastest speeds "
                                                           "measured (a lower bound of its work: study.runner.trial_seconds)")




class StudySpec(_Strict):
    """A study: a base trial configuration, grid axes, a per-cell search space and how to run it."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100,
                      description="study name: the MLflow experiment and the results folder (letters, digits, . _ -)")
    description: str = Field("", description="free text shown in MLflow")
    seed: int = Field(0, ge=0, description="seed of the search: cell i's Optuna sampler is seeded seed + i")
    base: dict[str, Any] = Field(default_factory=dict,
                                 description="the base TrialConfig (a mapping of its fields), or with `task: {env: "
                                                 "cartpole}` (or acrobot) a control task's ControlConfig; axes and "
                                                 "search override it")
    grid: dict[str, list[Any]] = Field(default_factory=dict,
                                       description="discrete axes: TrialConfig path -> values, or joint axis -> list of "
                                                   "{path: value} mappings; their product gives the cells")
    search: dict[str, SearchParam] = Field(default_factory=dict,
                                           description="per-member TrialConfig path -> Optuna distribution, sampled in every cell")
    samples_per_cell: int = Field(1, ge=1, le=MAX_SAMPLES_PER_CELL, description="points Optuna proposes in each cell")
    metric: str = Field("eval_reward_mean", description="point metric to optimise (an aggregate reported by the "
                                                        "trainer); its value at a point's last report is the result")
    mode: Literal["max", "min"] = Field("max", description="maximise or minimise `metric`")
    early_stopping: EarlyStopping | None = Field(None, description="optional member-level ASHA or median stopping")
    confirm: Confirm | None = Field(None, description="optional confirm stage: best point(s) per cell re-run with fresh seeds")
    resources: Resources = Field(default_factory=Resources, description="resources per trial (pack)")
    pack_size: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        16, description="most points trained together as one population in one trial; 1 = no packing; auto: 16 on "
                        "CPUs, and with resources.gpus > 0 as many as fill the trial's share of a GPU: "
                        "members = min(65536, (0.8 x gpus x GPU memory - 2 GiB) / bytes per member) for the "
                        "largest cell (uwm_model.memory), divided by the members per point (seeds)")
    max_concurrent: int | None = Field(None, ge=1, le=100_000, description="most trials running at once; default: as many as the "
                                                               "cluster fits when the study starts, so each cell's search "
                                                               "sees results early (set it on an autoscaling cluster, "
                                                               "which grows only for trials that wait)")
    max_failures: int = Field(2, ge=0, le=100, description="retries of a failed trial (from its last checkpoint)")

    _cells: list | None = PrivateAttr(None)
    _points_per_pack: int | None = PrivateAttr(None)

    @field_validator("grid")
    @classmethod
    def _grid_values(cls, grid):
        for axis, values in grid.items():
            if not values:
                raise ValueError(f"axis '{axis}' has no values")
        cells = math.prod(len(values) for values in grid.values())
        if cells > MAX_CELLS:   # counted before any cell is built
            raise ValueError(f"the axes give {cells:,} cells ({' x '.join(str(len(v)) for v in grid.values())}); "
                             f"at most {MAX_CELLS:,}")
        return grid

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric):
        if not is_study_metric(metric):
            raise ValueError(f"unknown metric '{metric}': use eval_reward_mean, auc_reward_mean (mean eval reward over "
                             f"training), episodes_to_threshold_median (with mode: min), another <per-seed metric>_mean, "
                             f"or one of {', '.join(metrics.PER_POINT)} (docs/metrics.md)")
        return metric

    # ------------------------------------------------------------------ derived

    def spec_hash(self) -> str:
        """sha256 of the canonical JSON of the validated spec."""
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json", exclude_defaults=False), sort_keys=False)

    def cells(self) -> list["Cell"]:
        """Every grid cell with its validated configuration (computed once)."""
        if self._cells is None:
            self._cells = _expand(self)
        return self._cells

    def search_names(self, cell: "Cell") -> dict[str, tuple[str, SearchParam, int | None]]:
        """Optuna parameter name -> (path, parameter, layer or None) for one cell."""
        names = {}
        for path, param in self.search.items():
            if param.per_layer:
                for layer in range(1, cell.layers + 1):
                    names[f"{path}.l{layer}"] = (path, param, layer)
            else:
                names[path] = (path, param, None)
        return names

    def point_config(self, cell: "Cell", params: dict[str, Any], **fields) -> dict:
        """The full TrialConfig (as JSON data) of a cell with sampled parameters and extra fields set."""
        data = copy.deepcopy(cell.config)
        for path, param in self.search.items():
            if param.per_layer:
                value = [params[f"{path}.l{layer}"] for layer in range(1, cell.layers + 1)]
            else:
                value = params[path]
            set_path(data, path, value)
        for path, value in fields.items():
            set_path(data, path, value)
        return canonical_config(data)

    @property
    def points_per_pack(self) -> int:
        """``pack_size`` resolved: the number itself, or the ``auto`` rule (see the field)."""
        if self.pack_size != "auto":
            return self.pack_size
        if self._points_per_pack is None:
            self._points_per_pack = 16
            if self.resources.gpus and not self.control:    # a control population is small: 16 points
                from uwm_model.memory import members_that_fit

                gpu = self.resources.gpu_memory_gib * 2**30 if self.resources.gpu_memory_gib else local_gpu_bytes()
                members = min(members_that_fit(TrialConfig.model_validate(c.config), self.resources.gpus * gpu)
                              for c in self.cells())
                seeds = max([c.config["seeds"] for c in self.cells()] + ([self.confirm.seeds] if self.confirm else []))
                self._points_per_pack = max(1, members // seeds)
        return self._points_per_pack

    @property
    def control(self) -> bool:
        """Whether the study trains the actor-critic on a control task (``base.task.env``)."""
        return is_control(self.base)

    @property
    def total_points(self) -> int:
        cells = len(self.cells())
        return cells * self.samples_per_cell + (cells * min(self.confirm.top_k, self.samples_per_cell) if self.confirm else 0)


def canonical_config(data: dict) -> dict:
    """A point's validated configuration as the study holds it (JSON data; a control task's in its trial file's
    form). A field's problem raises pydantic's ValidationError."""
    if is_control(data):
        return validate_control(data).trial_data()
    return TrialConfig.model_validate(data).model_dump(mode="json")


def local_gpu_bytes() -> float:
    """Memory of this machine's first CUDA device, or 80 GiB (an A100/H100) where torch sees none."""
    import torch

    return torch.cuda.get_device_properties(0).total_memory if torch.cuda.is_available() else 80 * 2**30


@dataclass(frozen=True)
class Cell:
    """One grid cell: ``axes`` maps every path the grid sets to its validated value."""

    index: int
    key: str
    axes: dict[str, Any]
    config: dict  # TrialConfig as JSON data, search parameters at their base values
    pack_key: str
    layers: int


def _trial_error(err: ValidationError, field: str, cell_key: str) -> UserError:
    inner = from_validation_error(err)
    where = f" ({inner.where})" if inner.where != "config" else ""
    return UserError(field, f"cell {cell_key}{where}: {inner.problem}")


def _expand(spec: StudySpec) -> list[Cell]:
    """Validate the base, the axes and the search space, and build every cell."""
    control = spec.control
    try:
        canonical_config(spec.base)
    except ValidationError as err:
        raise from_validation_error(err, "base") from None
    except UserError as err:        # a control task's own problem (its environment)
        raise UserError(f"base.{err.where}", err.problem) from None
    if control and spec.early_stopping is not None:
        raise UserError("early_stopping", "does not apply to a control task (its packs have no member-level stopping)")

    # ---- axes: list of (axis name, [ {path: value} per value ])
    axes: list[tuple[str, list[dict[str, Any]]]] = []
    owner: dict[str, str] = {}
    for name, values in spec.grid.items():
        if is_config_path(name, control):
            try:
                check_path(name, control)
            except ValueError as err:
                raise UserError(f"grid.{name}", str(err)) from None
            settings = [{name: v} for v in values]
        else:
            settings = []
            for i, value in enumerate(values):
                if not isinstance(value, dict) or not value:
                    close = difflib.get_close_matches(name.split(".")[0], config_fields(control), n=1)
                    if close:
                        raise UserError(f"grid.{name}", f"'{name}' is not a field of the trial configuration (did you mean '{close[0]}'?)")
                    raise UserError(f"grid.{name}[{i}]", f"'{name}' is not a field of the trial configuration, so it is a joint axis "
                                                         f"and each value must be a mapping of fields to values")
                flat = flatten_paths(value)
                for path in flat:
                    try:
                        check_path(path, control)
                    except ValueError as err:
                        raise UserError(f"grid.{name}[{i}].{path}", str(err)) from None
                settings.append(flat)
        for path in {p for s in settings for p in s}:
            if path in owner:
                raise UserError(f"grid.{name}", f"sets '{path}', which axis '{owner[path]}' sets too")
            owner[path] = name
        axes.append((name, settings))

    # ---- search space
    for path, param in spec.search.items():
        try:
            check_path(path, control)
        except ValueError as err:
            raise UserError(f"search.{path}", str(err)) from None
        if path not in searchable_fields(control):
            raise UserError(f"search.{path}", f"only per-member numeric fields can be searched "
                                              f"({', '.join(searchable_fields(control))}); "
                                              "put shape-fixing fields in the grid")
        if param.per_layer and (path != "lr" or control):
            raise UserError(f"search.{path}.per_layer", "a control task's lr is one number (the actor schedule's first "
                            "rate, the rest scaled with it)" if control else "only lr has one value per layer")
        if path in owner:
            raise UserError(f"search.{path}", f"is also the grid axis '{owner[path]}'")

    # ---- cells
    combos = []
    for combo in itertools.product(*(s for _, s in axes)):
        data = copy.deepcopy(spec.base)
        sets: dict[str, Any] = {}
        for setting in combo:
            for path, value in setting.items():
                set_path(data, path, value)
                sets[path] = value
        combos.append((data, sets))
    probe_rules = [] if control else _grid_probe_rules([data for data, _ in combos])
    cells, keys = [], set()
    for index, (data, sets) in enumerate(combos):
        if probe_rules and (data.get("probe") or {}).get("cross_rule") and "rules" not in data["probe"]:
            data["probe"] = {**data["probe"], "rules": probe_rules}
        raw_key = "|".join(f"{p}={format_value(v)}" for p, v in sets.items()) or "base"
        try:
            cfg = validate_control(data) if control else TrialConfig.model_validate(data)
        except ValidationError as err:
            bad = from_validation_error(err).where
            axis = next((owner[p] for p in sets if bad == p or bad.startswith(p + ".") or p.startswith(bad + ".")), None)
            raise _trial_error(err, f"grid.{axis}" if axis else "grid", raw_key) from None
        except UserError as err:    # a control task's environment
            raise UserError(f"grid.{owner.get(err.where, '')}".rstrip("."), f"cell {raw_key}: {err.problem}") from None
        dump = cfg.trial_data() if control else cfg.model_dump(mode="json")
        values = {p: get_path(dump, p) for p in sets}
        key = "|".join(f"{p}={format_value(v)}" for p, v in values.items()) or "base"
        if key in keys:
            raise UserError("grid", f"two cells have the same settings ({key}): an axis repeats a value")
        keys.add(key)
        cell = Cell(index, key, values, dump, cfg.pack_key(), cfg.layers)
        _check_device(spec, cfg, sets, owner, key)
        _check_search(spec, cell)
        cells.append(cell)
    return cells


def _grid_probe_rules(configs: list[dict]) -> list[dict]:
    """The cross-rule probe list a study gets by default: every rule with its default options, then every
    rule variant (rule, rule_options and reward baseline) the grid trains, so each trial's own variant is measured on every
    state; the analysis matches variants exactly and never substitutes another variant's probe."""
    default = TrialConfig.model_fields["rule"].default
    entries = [{"rule": name, "options": {}} for name in RULES]
    for data in configs:
        entry = {"rule": data.get("rule", default), "options": dict(data.get("rule_options") or {})}
        if data.get("baseline", "none") != "none":   # REINFORCE with an EMA baseline: a variant of its own
            entry["baseline"] = data["baseline"]
        if entry not in entries:
            entries.append(entry)
    return entries


def _check_device(spec: StudySpec, cfg: TrialConfig, sets: dict, owner: dict, key: str) -> None:
    """A CUDA device a trial cannot see: Ray hides every GPU from a trial that holds none
    (CUDA_VISIBLE_DEVICES is empty), and shows a trial holding g GPUs only ceil(g) of them."""
    index = cfg.cuda_index
    if index is None:
        return
    where = f"grid.{owner['device']}" if "device" in sets else "base.device"
    visible = math.ceil(spec.resources.gpus)
    if visible == 0:
        raise UserError(where, f"device {cfg.device} needs resources.gpus > 0: a trial that holds no GPU sees no CUDA "
                               "device (use device: auto to train on a GPU where there is one)"
                               + (f" (cell {key})" if "device" in sets else ""))
    if index >= visible:
        raise UserError(where, f"device {cfg.device}: a trial holding resources.gpus={spec.resources.gpus:g} sees "
                               f"{visible} GPU{'s' * (visible > 1)}, numbered from cuda:0")


def _check_search(spec: StudySpec, cell: Cell) -> None:
    """Every corner of the search space must give a valid TrialConfig in this cell."""
    names = spec.search_names(cell)
    if not names:
        return
    corners = [{n: p.corners()[0] for n, (_, p, _) in names.items()},
               {n: p.corners()[-1] for n, (_, p, _) in names.items()}]
    for n, (_, p, _) in names.items():
        if p.type == "categorical":
            corners += [{**corners[0], n: c} for c in p.choices]
    for params in corners:
        try:
            spec.point_config(cell, params)
        except ValidationError as err:
            bad = from_validation_error(err).where
            path = next((p for p in spec.search if bad.startswith(p) or p.startswith(bad)), None)
            raise _trial_error(err, f"search.{path}" if path else "search", cell.key) from None


# ----------------------------------------------------------------------------- loading


def validate_spec(data: dict, where: str = "") -> StudySpec:
    """A StudySpec from raw data, with every cell expanded and validated; errors are UserErrors."""
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as err:
        raise from_validation_error(err) from None
    spec.cells()
    return spec


def check_spec_overrides(overrides: list[str]) -> None:
    """A ``--set`` path must start at a spec field; a TrialConfig field is named under ``base.``."""
    for item in overrides:
        key, sep, _ = item.partition("=")
        top = key.strip().split(".")[0]
        if sep and top and top not in StudySpec.model_fields:
            hint = f"; did you mean base.{key.strip()}?" if top in TrialConfig.model_fields else \
                f" (spec fields: {', '.join(StudySpec.model_fields)})"
            raise UserError("--set", f"'{top}' is not a field of the study spec{hint}")


def load_spec(path: str | Path, overrides: list[str] = (), name: str | None = None) -> StudySpec:
    """Read, override (``--set``), rename (``--name``) and validate a study spec."""
    check_spec_overrides(list(overrides))
    data = apply_overrides(read_yaml(path), list(overrides))
    if name is not None:
        data["name"] = name
    return validate_spec(data)


def load_trial_config(path: str | Path, overrides: list[str] = ()) -> TrialConfig:
    """A TrialConfig from YAML with ``--set`` overrides; errors are UserErrors naming the field."""
    data = apply_overrides(read_yaml(path, "config"), list(overrides))
    try:
        return TrialConfig.model_validate(data)
    except ValidationError as err:
        raise from_validation_error(err) from None
