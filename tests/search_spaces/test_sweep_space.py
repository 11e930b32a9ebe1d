"""A sweep space file: what loads, what Optuna draws from it, and each mistake refused with file and key."""
from __future__ import annotations

import textwrap
from pathlib import Path

import optuna
import pytest

from mixunlearn.config import ConfigError, UnlearnConfig
from search_spaces import (CategoricalParam, FloatParam, IntParam, Objective, SpaceError, SweepDefaults,
                           load_space)

optuna.logging.set_verbosity(optuna.logging.WARNING)

VALID = """
base:
  dataset: fashion_mnist
  model: cnn_small
  epochs: 3
search:
  alpha: {low: 0.1, high: 4.0, log: true}
  epochs: {low: 1, high: 9, step: 2}
  gen_target: {choices: [current, ema]}
"""


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_a_minimal_file_gets_the_documented_defaults(tmp_path):
    space = load_space(write(tmp_path, VALID))
    assert space.search == {"alpha": FloatParam(0.1, 4.0, True), "epochs": IntParam(1, 9, False, 2),
                            "gen_target": CategoricalParam(("current", "ema"))}
    assert space.objectives == [Objective("avg_gap", "min")]
    assert space.sweep == SweepDefaults() and space.seed_defaults
    assert space.base["tau_mix"] == 20.0 and space.base["epochs"] == 3   # UnlearnConfig fills the rest
    assert "alpha" not in space.constants and space.constants["dataset"] == "fashion_mnist"


def test_exponents_without_a_dot_are_numbers(tmp_path):
    # PyYAML alone reads 1e-6 as the string '1e-6'.
    space = load_space(write(tmp_path, """
        base: {lr_unlearner: 5e-5}
        search:
          lr_unlearner: {low: 1e-6, high: 1E-3, log: true}
    """))
    assert space.search["lr_unlearner"] == FloatParam(1e-6, 1e-3, True)
    assert space.base["lr_unlearner"] == 5e-5


def test_base_can_be_another_files_key_with_constants_over_it(tmp_path):
    write(tmp_path, VALID, "shared.yaml")
    (tmp_path / "sub").mkdir()
    space = load_space(write(tmp_path, """
        base: ../shared.yaml#base
        constants: {train_subset: 50}
        search: {omega: {low: 0.05, high: 10, log: true}}
    """, "sub/space.yaml"))
    assert space.base["model"] == "cnn_small" and space.base["train_subset"] == 50
    assert space.search["omega"] == FloatParam(0.05, 10.0, True)


def test_base_can_be_an_exported_config(tmp_path):
    write(tmp_path, "dataset: mnist\nalpha: 1.5\nepochs: 2\n", "best.yaml")
    space = load_space(write(tmp_path, "base: best.yaml\nsearch: {omega: {choices: [0.5, 1, 2]}}\n"))
    assert space.base["dataset"] == "mnist" and space.paper_defaults() == {"omega": 1.0}
    assert space.search["omega"].choices == (0.5, 1.0, 2.0)   # ints in a float field become floats


def test_a_base_of_another_method_keeps_only_the_common_fields(tmp_path):
    write(tmp_path, VALID.replace("epochs: 3", "epochs: 3\n  train_subset: 50\n  lr_unlearner: 1.0e-5"), "shared.yaml")
    space = load_space(write(tmp_path, """
        base: shared.yaml#base
        constants: {method: ga}
        search: {lr: {low: 1.0e-5, high: 1.0e-1, log: true}}
    """))
    ga = UnlearnConfig.from_dict({"method": "ga", "model": "cnn_small"}).to_dict()
    assert space.base["method"] == "ga" and space.base["train_subset"] == 50   # the shared data carries over
    assert "lr_unlearner" not in space.base and "alpha" not in space.base     # MixUnlearn's fields do not
    assert space.base["epochs"] == ga["epochs"] != 3                          # GA's own default, not MixUnlearn's 3
    assert space.paper_defaults() == {"lr": ga["lr"]}


def test_another_methods_field_is_refused_naming_the_methods_searchable_fields(tmp_path):
    path = write(tmp_path, "base: {method: ga}\nsearch: {alpha: {low: 0.1, high: 1.0}}\n")
    with pytest.raises(SpaceError, match=r"search\.alpha is not a config field of method 'ga'.*lr, momentum"):
        load_space(path)
    path = write(tmp_path, "search: {lr: {low: 0.1, high: 1.0}}\n")
    with pytest.raises(SpaceError, match=r"search\.lr is not a config field of method 'mixunlearn'.*alpha"):
        load_space(path)


def test_an_empty_search_is_a_fixed_config(tmp_path):
    space = load_space(write(tmp_path, "base: {method: retrain, ref_epochs: 3}\nsearch: {}\n"))
    assert space.search == {} and space.points_to_evaluate() == []   # nothing to seed: the base is the trial
    trial = optuna.create_study().ask()
    assert space.define_by_run(trial) == space.base and trial.params == {}
    assert space.config_for({}) == space.base and space.base["epochs"] == 3   # Retrain's epochs = ref_epochs


def test_paper_defaults_are_clipped_into_the_space(tmp_path):
    space = load_space(write(tmp_path, """
        base: {alpha: 0.75, epochs: 20, gen_target: frozen}
        search:
          alpha: {low: 1.0, high: 4.0}
          epochs: {low: 1, high: 9, step: 2}
          gen_target: {choices: [current, ema]}
        seed_defaults: false
    """))
    # gen_target's base value is no choice, so Optuna samples it; the others move to the nearest end.
    assert space.paper_defaults() == {"alpha": 1.0, "epochs": 9}
    assert space.points_to_evaluate() == []


def test_config_for_merges_params_over_base_and_validates(tmp_path):
    space = load_space(write(tmp_path, VALID))
    assert space.config_for({"alpha": 2.0, "epochs": 5})["alpha"] == 2.0
    with pytest.raises(ConfigError, match="alpah"):
        space.config_for({"alpah": 2.0})


def test_define_by_run_keeps_sampling_inside_the_range(tmp_path):
    space = load_space(write(tmp_path, VALID))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(100):
        trial = study.ask()
        constants = space.define_by_run(trial)
        assert 0.1 <= trial.params["alpha"] <= 4.0 and trial.params["epochs"] in (1, 3, 5, 7, 9)
        seen.add(trial.params["gen_target"])
        assert "epochs" not in constants and constants["model"] == "cnn_small"
        study.tell(trial, trial.params["alpha"])
    assert seen == {"current", "ema"}


BAD_SPACES = {
    "unknown parameter": ("search: {alpah: {low: 0.1, high: 4.0}}", ["search.alpah", "not a config field", "alpha"]),
    "unsearchable field": ("search: {dataset: {choices: [mnist, cifar10]}}",
                           ["search.dataset", "cannot be searched"]),
    "reversed range": ("search: {alpha: {low: 4.0, high: 0.1}}", ["search.alpha", "reversed", "swap"]),
    "empty range": ("search: {alpha: {low: 1.0, high: 1.0}}", ["search.alpha", "empty range"]),
    "log with low 0": ("search: {omega: {low: 0.0, high: 10.0, log: true}}", ["search.omega", "low > 0"]),
    "float range for an int field": ("search: {epochs: {low: 1.5, high: 8}}", ["search.epochs", "low 1.5", "int"]),
    "string where a number is wanted": ("search: {alpha: {low: small, high: 4.0}}",
                                        ["search.alpha", "'small'", "float"]),
    "choices of the wrong type": ("search: {gen_interval: {choices: [1, two, 4]}}",
                                  ["search.gen_interval", "'two'", "int"]),
    "a choice the config refuses": ("search: {gen_target: {choices: [current, teacher]}}",
                                    ["search.gen_target", "teacher", "ema"]),
    "a bound the config refuses": ("search: {ema_momentum: {low: 0.9, high: 1.0}}",
                                   ["search.ema_momentum", "[0, 1)"]),
    "a range for a string field": ("search: {gen_target: {low: 1, high: 2}}", ["search.gen_target", "choices"]),
    "one choice": ("search: {gen_steps: {choices: [2]}}", ["search.gen_steps", "at least two"]),
    "unknown key in a parameter": ("search: {alpha: {low: 0.1, high: 4.0, scale: log}}",
                                   ["search.alpha", "'scale'", "log"]),
    "a bare value": ("search: {alpha: 0.5}", ["search.alpha", "mapping"]),
    "no search": ("base: {alpha: 0.5}", ["search", "at least one"]),
    "unknown objective metric": ("search: {alpha: {low: 0.1, high: 4.0}}\nobjectives: [{metric: accuracy, mode: max}]",
                                 ["objectives[0]", "'accuracy'", "avg_gap"]),
    "unknown objective mode": ("search: {alpha: {low: 0.1, high: 4.0}}\nobjectives: [{metric: ua, mode: maximise}]",
                               ["objectives[0]", "'maximise'", "min or max"]),
    "unknown top-level key": ("search: {alpha: {low: 0.1, high: 4.0}}\ntrials: 8",
                              ["top-level key 'trials'", "sweep"]),
    "unknown sweep setting": ("search: {alpha: {low: 0.1, high: 4.0}}\nsweep: {samples: 8}",
                              ["sweep.samples", "trials"]),
    "negative curve budget": ("search: {alpha: {low: 0.1, high: 4.0}}\nsweep: {curve_budget: -0.1}",
                              ["sweep.curve_budget", "from 0 up", "-0.1"]),
    "curve budget in words": ("search: {alpha: {low: 0.1, high: 4.0}}\nsweep: {curve_budget: all}",
                              ["sweep.curve_budget", "'all'"]),
    "bad base field": ("base: {alpah: 0.5}\nsearch: {omega: {low: 0.1, high: 4.0}}", ["base", "'alpah'", "alpha"]),
    "bad base value": ("base: {alpha: -1}\nsearch: {omega: {low: 0.1, high: 4.0}}", ["base", "alpha", "positive"]),
    "bad base type": ("base: {epochs: many}\nsearch: {omega: {low: 0.1, high: 4.0}}", ["base", "'epochs'", "int"]),
    "searched and constant": ("constants: {alpha: 1.0}\nsearch: {alpha: {low: 0.1, high: 4.0}}",
                              ["constants.alpha", "also searched"]),
    "duplicate key": ("search:\n  alpha: {low: 0.1, high: 4.0}\n  alpha: {low: 0.2, high: 4.0}",
                      ["line 3", "'alpha'", "twice"]),
    "missing base file": ("base: nowhere.yaml\nsearch: {alpha: {low: 0.1, high: 4.0}}",
                          ["base 'nowhere.yaml'", "does not exist", "relative"]),
    "base refers to its own file": ("base: space.yaml#base\nsearch: {alpha: {low: 0.1, high: 4.0}}", ["refers back"]),
    "not YAML": ("search: {alpha: [low: 0.1", ["not valid YAML"]),
}


@pytest.mark.parametrize("mistake", BAD_SPACES)
def test_each_mistake_is_one_sentence_naming_the_file_and_key(tmp_path, mistake):
    text, expected = BAD_SPACES[mistake]
    path = write(tmp_path, text)
    with pytest.raises(SpaceError) as caught:
        load_space(path)
    message = str(caught.value)
    assert message.startswith(str(path)), message
    for fragment in expected:
        assert fragment in message, (fragment, message)
    assert "\n" not in message


def test_a_space_error_is_a_config_error():
    assert issubclass(SpaceError, ConfigError)


def test_a_base_key_the_other_file_lacks_is_named(tmp_path):
    write(tmp_path, VALID, "shared.yaml")
    path = write(tmp_path, "base: shared.yaml#bsae\nsearch: {omega: {low: 0.1, high: 4.0}}\n")
    expected = r"space\.yaml: base 'shared\.yaml#bsae' names key 'bsae'.*it has: base, search"
    with pytest.raises(SpaceError, match=expected):
        load_space(path)
