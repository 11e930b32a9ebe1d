"""Every method's shipped spaces (search_spaces/methods/<method>/{quick,paper,full}.yaml): what they search,
how they are named, and one tiny real trial of every shipped space, drawn by Optuna and trained one epoch."""
from __future__ import annotations

import json
import math
import re

import optuna
import pytest

from mixunlearn.config import UnlearnConfig
from mixunlearn.data import shared_data_dirs
from mixunlearn.methods import METHODS, Diverged, build_method
from mixunlearn.run import prepare
from search_spaces import (IntParam, SpaceError, is_preset, list_method_spaces, list_presets,
                           load_space, method_space_path, preset_path, shipped_name)

optuna.logging.set_verbosity(optuna.logging.WARNING)

TRACKS = ("quick", "paper", "full")
DU_COMMON = ("lr", "weight_decay", "batch_size", "epochs")   # BASELINES.md "DU's common search space"
SHIPPED = [*list_presets(), *list_method_spaces()]


def method_spaces():
    return [(method, track) for method in METHODS for track in TRACKS]


# ---- (a) what each method's spaces are -------------------------------------------------------------------

def test_every_method_has_a_space_on_every_track():
    assert sorted(list_method_spaces()) == sorted(f"{t}/{m}" for m, t in method_spaces())


@pytest.mark.parametrize("method, track", method_spaces())
def test_a_method_space_loads_for_its_method_and_searches_only_its_fields(method, track):
    space = load_space(method_space_path(method, track))
    assert space.base["method"] == method
    assert set(space.search) <= set(METHODS[method].config_fields())
    top = load_space(preset_path(track)).base
    shared = set(UnlearnConfig.common_fields()) - {"method"}
    # The data, task, references and evaluation are the top-level preset's: one f_D and Retrain per track.
    assert {k: space.base[k] for k in shared} == {k: top[k] for k in shared}
    assert space.objectives == load_space(preset_path(track)).objectives
    if space.search:
        assert space.seed_defaults and space.points_to_evaluate() == [space.paper_defaults()]


@pytest.mark.parametrize("method", [m for m in METHODS if m != "retrain"])
def test_paper_spaces_search_dus_common_dimensions_the_method_has(method):
    space = load_space(method_space_path(method, "paper"))
    fields = METHODS[method].config_fields()
    assert {d for d in DU_COMMON if d in fields} <= set(space.search)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "retrain"])
def test_quick_spaces_are_seconds_long_and_start_from_the_tracks_defaults(method):
    space = load_space(method_space_path(method, "quick"))
    assert (space.sweep.trials, space.sweep.concurrency, space.sweep.grace_epochs) == (8, 2, 1)
    # Trial 1 is the method's own cnn_small values, none clipped: the sweep shows what tuning buys.
    defaults = UnlearnConfig.from_dict({**space.constants, "method": method}).to_dict()
    assert space.paper_defaults() == {name: defaults[name] for name in space.search}
    epochs = space.search.get("epochs")
    assert (epochs.high if isinstance(epochs, IntParam) else space.base["epochs"]) <= 20


def test_retrain_is_the_fixed_yardstick_on_every_track():
    for track in TRACKS:
        space = load_space(method_space_path("retrain", track))
        top = load_space(preset_path(track)).base
        assert space.search == {} and space.sweep.trials == 1
        assert (space.base["epochs"], space.base["lr"], space.base["batch_size"]) == (
            top["ref_epochs"], top["ref_lr"], top["ref_batch_size"])


def test_mixunlearns_method_spaces_are_the_top_level_presets():
    for track in TRACKS:
        named, top = load_space(method_space_path("mixunlearn", track)), load_space(preset_path(track))
        assert (named.base, named.search, named.sweep, named.objectives) == (top.base, top.search, top.sweep,
                                                                            top.objectives)


# MixUnlearn's block is the top-level presets' (cited once on its `search:` line); Retrain searches nothing.
@pytest.mark.parametrize("method, track", [(m, t) for m, t in method_spaces() if m not in ("mixunlearn", "retrain")])
def test_every_searched_range_carries_a_comment(method, track):
    lines = method_space_path(method, track).read_text().splitlines()
    block = lines[lines.index("search:") + 1:lines.index("objectives:")]
    entries = [line for line in block if re.match(r"^  \w+:", line)]
    assert entries and all("#" in line for line in entries), [line for line in entries if "#" not in line]


def test_the_full_track_gives_g_at_least_500_steps_at_the_default_k():
    """Issue 19: G must have room to move. All of Fashion-MNIST, class 0 forgotten: D_f is 6,000 images."""
    from mixunlearn.data import load_data
    from mixunlearn.methods.mixunlearn import MixUnlearnHyper
    from mixunlearn.tasks import make_split

    cfg = UnlearnConfig.from_dict(load_space(preset_path("full")).base)
    assert (cfg.train_subset, cfg.test_subset, cfg.task, cfg.forget_class, cfg.targets, cfg.model) == (
        0, 0, "class", 0, "agnostic", "cnn_small")
    assert cfg.gen_interval == MixUnlearnHyper().gen_interval == 4 and cfg.gen_steps == 1
    try:
        split = make_split(cfg, load_data(cfg))
    except Exception as missing:   # noqa: BLE001 - no Fashion-MNIST here: the arithmetic of its 6,000
        pytest.skip(f"Fashion-MNIST is not installed: {missing}")
    steps_per_epoch = min(-(-len(split.forget_idx) // cfg.batch_size), -(-len(split.retain_idx) // cfg.batch_size))
    assert (len(split.forget_idx), steps_per_epoch) == (6000, 188)
    g_steps = -(-steps_per_epoch * cfg.epochs // cfg.gen_interval) * cfg.gen_steps
    assert 500 <= g_steps == 517


# ---- names: <track>/<method> resolves like a preset ---------------------------------------------------------

def test_track_slash_method_resolves_like_a_preset():
    assert preset_path("quick/ga") == preset_path("quick/ga.yaml") == method_space_path("ga", "quick")
    assert preset_path("paper/scrub").parts[-3:] == ("methods", "scrub", "paper.yaml")
    assert is_preset("paper/laf_r") and is_preset("quick") and not is_preset("quick/nothing")
    assert list_presets() == ["full", "paper", "paper_pareto", "quick"]   # the top-level files alone
    assert shipped_name(preset_path("paper/ga")) == "paper/ga" and shipped_name(preset_path("quick")) == "quick"


def test_an_unknown_name_lists_what_exists():
    with pytest.raises(SpaceError, match=r"'quick/gaa'.*paper_pareto, quick;.* quick/ga,"):
        preset_path("quick/gaa")
    with pytest.raises(SpaceError, match=r"method 'ga' on track 'fast'.*methods: .*ga.*tracks: full, paper, quick"):
        method_space_path("ga", "fast")


def test_the_cli_takes_a_method_space_name():
    from mixsweep.cli import space_file
    assert space_file("quick/ga") == method_space_path("ga", "quick")


# ---- (b) one tiny real trial of every shipped space ----------------------------------------------------------

# The shipped base shrunk to a real run of seconds on a CPU core; every trial of a track shares it.
TINY = {
    "fashion_mnist": {"train_subset": 20, "test_subset": 10, "ref_epochs": 1, "mia_samples": 50},
    "cifar10": {"train_subset": 5, "test_subset": 5, "ref_epochs": 1, "ref_batch_size": 16, "mia_samples": 50},
}
CIFAR10_ARCHIVE = "cifar10-images-*.tar.gz"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Prepared runs by their common fields: one f_D and Retrain per track for the whole module."""
    cache = tmp_path_factory.mktemp("method-spaces-cache")
    held = {}

    def get(cfg: UnlearnConfig):
        common = {k: v for k, v in cfg.to_dict().items() if k in UnlearnConfig.common_fields() and k != "method"}
        key = json.dumps(common, sort_keys=True)
        if key not in held:
            held[key] = prepare(UnlearnConfig.from_dict(common), device="cpu", cache_dir=cache)
        return held[key]
    return get


def tiny_config(space, params: dict) -> UnlearnConfig:
    config = space.config_for(params)
    shrunk = {**config, **TINY[config["dataset"]], "epochs": 1, "device": "cpu"}
    return UnlearnConfig.from_dict(shrunk, source=f"{space.path} (shrunk)")


def tiny_trials():
    """(space, point) pairs: the defaults (trial 1 of a sweep) of every space, and on the CPU track, whose
    trials take a second, a random draw too. ResNet-18 on a CPU core takes seconds per trial even here,
    so a paper space runs its defaults only; the ranges it draws from are checked on load."""
    for name in SHIPPED:
        space = load_space(preset_path(name))
        if space.search:
            yield name, "defaults"
        if space.base["dataset"] != "cifar10" or not space.search:
            yield name, "random"


@pytest.mark.parametrize("name, point", list(tiny_trials()))
def test_a_tiny_trial_of_every_shipped_space_trains_and_evaluates(name, point, prepared):
    space = load_space(preset_path(name))
    if space.base["dataset"] == "cifar10" and not any(
            d.is_dir() and any(d.glob(CIFAR10_ARCHIVE)) for d in shared_data_dirs()):
        pytest.skip(f"no {CIFAR10_ARCHIVE} in the shared data folder ({', '.join(map(str, shared_data_dirs()))})")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    if point == "defaults":
        for enqueued in space.points_to_evaluate():
            study.enqueue_trial(enqueued)   # what OptunaSearch does: trial 1 is the defaults
    trial = study.ask()
    constants = space.define_by_run(trial)
    assert set(trial.params) == set(space.search)
    if point == "defaults":
        assert {k: trial.params[k] for k in space.paper_defaults()} == space.paper_defaults()
    cfg = tiny_config(space, {**trial.params, **constants})
    assert cfg.method == space.base["method"] and cfg.unlearn_epochs >= 1
    run = prepared(cfg)
    loop = build_method(cfg, run.data, run.split, original=run.references.original, device=run.device)
    try:
        seconds = loop.train_epoch()
    except Diverged as diverged:
        # A drawn point may diverge (a trial closed FAILED, tagged diverged); the defaults never should.
        assert point == "random" and diverged.epoch == 1 and diverged.method == cfg.method
        return
    metrics = run.evaluate(loop.model)
    assert seconds > 0 and loop.epoch == 1
    assert {"ua", "ra", "ta", "mia_efficacy", "avg_gap"} <= set(metrics)
    assert all(math.isfinite(v) for v in metrics.values()), metrics
