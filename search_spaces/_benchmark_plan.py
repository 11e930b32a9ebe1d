"""A benchmark plan: every method's sweep under one equal trial budget, then each winner over seeds.

    # search_spaces/benchmarks/quick.yaml
    base: {dataset: fashion_mnist, train_subset: 250, task: class, forget_class: 0, model: cnn_small}
    methods:                       # a method space file each (relative to this file) or a shipped name
      - quick/ga
      - {space: ../my/ft.yaml}
    budget: {trials: 8, concurrency: 2, grace_epochs: 1}   # every method gets exactly this
    seeds: [0, 1, 2]               # each method's best config re-runs with seed = each of these
    objective: avg_gap             # or du: Deep Unlearn's selection (metric du_norm); or oracle_nll
    audit: {models: 16}            # optional: each winner audited against 16 oracles (mixsweep/audit.py)

`base` holds common fields only (data, task, reference recipe, evaluation sizes): they are laid over
every method space's base, so all methods are judged on the same data against the same f_D and
Retrain. A method's own fields (lr, epochs, ...) stay in its space. `budget` replaces each space's
`sweep:` and `objective` its `objectives:`, so no method gets more trials or another target than the
others. `method_space(...)` is the space a method's sweep runs, as a document `load_space` reads.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mixunlearn.config import UnlearnConfig

from ._base import given_base, validated
from ._errors import PlanError, SpaceError
from ._metrics import METRICS
from ._params import parse_param
from ._plan import _seeds
from ._presets import preset_path
from ._space import Objective, SweepDefaults, sweep_defaults
from ._yaml import load_yaml

_TOP_LEVEL = ("base", "methods", "budget", "seeds", "objective", "audit")
# The objective's name in a plan -> (the reported metric, its direction). `du`: Deep Unlearn's choice of
# the best trial, the Euclidean norm of its four minimised gaps (BASELINES.md).
# `oracle_nll`: the trial's margins against the audit pool's oracles (mixunlearn/judge/objective.py; needs
# judge_models in the plan's base).
OBJECTIVES = {"avg_gap": Objective("avg_gap", "min"), "du": Objective("du_norm", "min"),
              "oracle_nll": Objective("oracle_nll", "min")}
# Common fields a plan may not set: each method space names its method, and `seeds:` sets the seed.
_NOT_IN_BASE = ("method", "seed")


@dataclass(frozen=True)
class BenchmarkMethod:
    """One row of the benchmark: a method and the space its sweep searches."""
    name: str                      # the config's `method`
    space_file: Path               # the method's space file, as the plan resolved it
    space: dict[str, Any]          # the space document its sweep runs: plan base, budget, objective applied


@dataclass(frozen=True)
class BenchmarkPlan:
    """A loaded, validated benchmark plan. Build it with `load_benchmark_plan`."""
    path: Path
    base: dict[str, Any]           # the plan's common fields, as written
    methods: list[BenchmarkMethod]
    budget: SweepDefaults
    seeds: list[int]
    objective: str                 # the plan's spelling: avg_gap or du
    metric: Objective              # what the sweeps optimise
    audit_models: int = 0          # N: each method's winner audited against N oracles after its seed runs; 0 = none

    def identity(self) -> dict[str, Any]:
        """Everything but the seeds: a benchmark continued under its name must keep all of it."""
        identity = {"methods": {m.name: m.space for m in self.methods}, "budget": asdict(self.budget),
                    "objective": self.objective}
        if self.audit_models:   # only when set: a plan without an audit keeps the identity it always had
            identity["audit"] = {"models": self.audit_models}
        return identity


def load_benchmark_plan(path: str | Path) -> BenchmarkPlan:
    """Read and validate the benchmark plan at `path`; a problem raises `PlanError` naming file and key."""
    path = Path(path)
    document = load_yaml(path, error=PlanError)
    unknown = [key for key in document if key not in _TOP_LEVEL]
    if unknown:
        raise PlanError(f"{path}: unknown top-level key {unknown[0]!r}; allowed: {', '.join(_TOP_LEVEL)}")
    base = _common_base(document.get("base") or {}, path)
    budget = sweep_defaults(document.get("budget"), path, key="budget", error=PlanError)
    objective = _objective(document.get("objective", "avg_gap"), path)
    if objective == "oracle_nll" and int(base.get("judge_models", 0)) < 3:
        raise PlanError(f"{path}: objective oracle_nll reads a pool of oracles; set judge_models: 16 (at least 3) "
                        "in base")
    methods: list[BenchmarkMethod] = []
    entries = document.get("methods")
    if not isinstance(entries, list) or not entries:
        raise PlanError(f"{path}: methods must list at least one method space, e.g. methods: [quick/ga, "
                        "{space: ../my/ft.yaml}]")
    for index, entry in enumerate(entries):
        key = f"{path}: methods[{index}]"
        space_file = _space_file(entry, key, path)
        space = method_space(space_file, base=base, budget=budget, objective=OBJECTIVES[objective], key=key)
        name = space["base"]["method"]
        twin = next((i for i, m in enumerate(methods) if m.name == name), None)
        if twin is not None:
            raise PlanError(f"{key}: method {name!r} is already benchmarked by methods[{twin}]; keep one of them "
                            "(one sweep per method)")
        methods.append(BenchmarkMethod(name=name, space_file=space_file, space=space))
    return BenchmarkPlan(path=path, base=base, methods=methods, budget=budget,
                         seeds=_seeds(document.get("seeds", [0]), path), objective=objective,
                         metric=OBJECTIVES[objective], audit_models=_audit(document.get("audit"), path))


def _audit(value: Any, path: Path) -> int:
    """`audit: {models: N}` -> N (at least 3); absent -> 0."""
    if value is None:
        return 0
    if not isinstance(value, dict) or set(value) != {"models"} or isinstance(value["models"], bool) \
            or not isinstance(value["models"], int) or value["models"] < 3:
        raise PlanError(f"{path}: audit must be {{models: N}} with N >= 3 oracles per pool (16 or more separate "
                        f"methods), found {value!r}")
    return value["models"]


def method_space(space_file: Path, *, base: dict[str, Any], budget: SweepDefaults, objective: Objective,
                 key: str) -> dict[str, Any]:
    """The space document a method's sweep runs: its base (full, validated) with the plan's common fields
    over it, its search as written, the plan's objective and budget. The plan's fields are laid over what
    the space file gives before the method's defaults are filled in, so defaults that follow from common
    fields (Retrain's recipe from ref_*) follow the plan's."""
    document = load_yaml(space_file, error=PlanError)
    try:
        space_base = given_base(document, path=space_file, error=SpaceError)
    except SpaceError as error:
        raise PlanError(f"{key}: {error}") from None
    merged = validated({**space_base, **base}, source=f"{key} ({space_file.name}) with the plan's base",
                       error=PlanError)
    search = document.get("search")
    if not isinstance(search, dict):
        raise PlanError(f"{key}: {space_file} has no search mapping; give the fields to tune, or search: {{}} for "
                        "a method that is measured, not tuned")
    sweep = asdict(budget)
    if not search:   # a fixed recipe (Retrain's): one run of it is its sweep; the seeds still re-run it
        sweep["trials"] = 1
    for name, spec in search.items():
        try:
            parse_param(name, spec, base=merged, path=str(space_file))
        except SpaceError as error:
            raise PlanError(f"{key}: {error}") from None
    seed_defaults = document.get("seed_defaults", True)
    if not isinstance(seed_defaults, bool):
        raise PlanError(f"{key}: {space_file}: seed_defaults must be true or false, found {seed_defaults!r}")
    return {"base": merged, "search": copy.deepcopy(search),
            "objectives": [{"metric": objective.metric, "mode": objective.mode}],
            "sweep": sweep, "seed_defaults": seed_defaults}


def _space_file(entry: Any, key: str, path: Path) -> Path:
    """A method entry: `name-or-path` or {space: name-or-path}; a path is relative to the plan."""
    if isinstance(entry, dict):
        if set(entry) != {"space"}:
            raise PlanError(f"{key} must be a space file or {{space: FILE}} (found keys {sorted(entry)})")
        entry = entry["space"]
    if not isinstance(entry, str) or not entry:
        raise PlanError(f"{key} must name a method space file or a shipped space such as quick/ga "
                        f"(found {entry!r})")
    local = (path.parent / entry).resolve()
    if local.is_file():
        return local
    try:
        return preset_path(entry)
    except SpaceError:
        raise PlanError(f"{key}: {entry!r} is neither a file (relative to {path.parent}) nor a shipped space; "
                        "fix the path or use a name such as quick/ga") from None


def _common_base(value: Any, path: Path) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PlanError(f"{path}: base must be a mapping of common config fields, e.g. {{dataset: fashion_mnist}} "
                        f"(found {type(value).__name__})")
    common = UnlearnConfig.common_fields()
    for name in value:
        if name in _NOT_IN_BASE:
            where = "each method space's base" if name == "method" else "seeds:"
            raise PlanError(f"{path}: base.{name} is set by {where}, not by the plan's base; remove it there")
        if name not in common:
            raise PlanError(f"{path}: base.{name} is not a common config field (a method's own field belongs in its "
                            f"space file); remove it or use one of {', '.join(c for c in common if c not in _NOT_IN_BASE)}")
    validated(dict(value), source=f"{path}: base", error=PlanError)
    return dict(value)


def _objective(value: Any, path: Path) -> str:
    if value not in OBJECTIVES:
        raise PlanError(f"{path}: objective {value!r} is not known; use one of {', '.join(OBJECTIVES)}")
    metric = OBJECTIVES[value].metric
    if metric not in METRICS:
        raise PlanError(f"{path}: objective {value} selects by the metric {metric}, which this version does not "
                        "report yet; use objective: avg_gap")
    return value
