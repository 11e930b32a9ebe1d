"""MixUnlearn under the common contract, like GA: a Method with a Hyper in its own file, built by the base's
constructor, refused and diverging as a baseline is; and the layers config <- methods <- fields, no circle.

test_contract.py runs its resume, label-access and forgetting checks on every registered method, MixUnlearn
included (its NAMES are METHODS' keys).
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from method_helpers import REAL, build

from mixunlearn.config import ConfigError, UnlearnConfig
from mixunlearn.methods import METHODS, Diverged, Method
from mixunlearn.methods.mixunlearn import MixUnlearn, MixUnlearnHyper

ROOT = Path(__file__).resolve().parents[3]


def test_mixunlearn_is_a_registered_method_with_its_own_hyper():
    assert issubclass(METHODS["mixunlearn"], Method) and METHODS["mixunlearn"] is MixUnlearn
    assert MixUnlearn.Hyper is MixUnlearnHyper and dataclasses.is_dataclass(MixUnlearnHyper)
    assert inspect.getsourcefile(MixUnlearnHyper) == inspect.getsourcefile(MixUnlearn)   # in its own file
    names = lambda f: [(p.name, p.kind) for p in inspect.signature(f).parameters.values()]  # noqa: E731
    assert names(MixUnlearn.__init__) == names(Method.__init__)
    cfg = UnlearnConfig(alpha=1.5)
    assert isinstance(cfg.hyper, MixUnlearnHyper) and cfg.hyper.alpha == cfg.alpha == 1.5
    assert MixUnlearn.default_hyper(REAL) == MixUnlearnHyper()


def test_the_config_treats_mixunlearn_like_ga():
    for method, field, own in (("mixunlearn", "lr", "alpha"), ("ga", "alpha", "lr")):
        fields = UnlearnConfig.field_names(method)
        assert fields[:len(UnlearnConfig.common_fields())] == UnlearnConfig.common_fields()
        assert own in fields and field not in fields
        with pytest.raises(ConfigError, match=f"field '{field}' is not a field of method '{method}'"):
            UnlearnConfig.from_dict({"method": method, field: 1.0}, source="my.yaml")
        cfg = UnlearnConfig.from_dict({"method": method, own: "0.5"})
        assert set(cfg.to_dict()) == set(fields) and getattr(cfg.hyper, own) == 0.5
    with pytest.raises(ConfigError, match="gen_target = 'f_D' is not allowed for method 'mixunlearn'; use one of current, ema, frozen"):
        UnlearnConfig(gen_target="f_D")


def test_a_diverging_mixunlearn_raises_diverged_naming_the_epoch(real):
    # Measured on the tiny set: lr_unlearner 1e6 gives a NaN loss in epoch 1; 1e3 does not.
    hyper = dataclasses.replace(MixUnlearn.default_hyper(REAL), lr_unlearner=1e6, epochs=3)
    loop = build(real, MixUnlearn, hyper=hyper)
    with pytest.raises(Diverged) as caught:
        loop.train_epoch()
    assert caught.value.method == "mixunlearn" and caught.value.epoch == 1 and loop.epoch == 0
    assert "mixunlearn diverged in epoch 1" in str(caught.value)


def imported(code: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_methods_never_import_the_config_and_the_config_loads_no_method():
    """fields <- methods <- config: the registry, every method file (MixUnlearn's included) and what they
    import load without mixunlearn.config; the config module itself loads neither torch nor a method."""
    below = imported("import mixunlearn.methods")
    assert "mixunlearn.methods.mixunlearn" in below and "mixunlearn.config" not in below
    light = imported("import mixunlearn.config")
    assert not {"torch", "mixunlearn.methods"} & set(light)
