"""The `mixsweep` command answers --help and refuses bad input before torch, Ray or MLflow are imported."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "ray", "mlflow")

# Runs the CLI in a fresh interpreter and prints which heavy packages it imported, whatever the exit.
PROBE = """
import json, sys
from mixsweep.cli import main
try:
    status = main(sys.argv[1:])
except SystemExit as exit:
    status = exit.code
print(json.dumps({"status": status, "heavy": sorted(m for m in %r if m in sys.modules)}))
""" % (HEAVY,)


def imported_by(args: list[str], cwd: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120)
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "stderr": done.stderr}


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["export", "--help"], ["train", "--help"],
                                  ["ablate", "--help"], ["benchmark", "--help"]])
def test_help_imports_neither_torch_nor_ray_nor_mlflow(args, tmp_path):
    result = imported_by(args, tmp_path)
    assert result["status"] == 0 and result["heavy"] == []


@pytest.mark.parametrize("args, message", [
    (["run", "no_such_space.yaml"], "no_such_space.yaml: no such space file"),
    (["run", "quick", "--trials", "0"], "--trials 0: it must be a positive whole number"),
    (["run", "quick", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["train", "missing.yaml"], "missing.yaml: no such file"),
    (["ablate", "missing_plan"], "missing_plan: no such plan file"),
    (["export", "no_such_sweep", "--storage", "."], "sweep 'no_such_sweep'"),
])
def test_a_refused_command_exits_2_before_any_heavy_import(args, message, tmp_path):
    result = imported_by(args, tmp_path)
    assert result["status"] == 2, result
    assert message in result["stderr"]
    assert result["heavy"] == []


def test_a_bad_space_file_is_refused_naming_the_key_before_ray_or_mlflow(tmp_path):
    """A field's value is checked against its method's Hyper, which lives in the method's file: the methods
    and torch load (~2 s, MixUnlearn's fields as a baseline's since issue 19), Ray and MLflow do not."""
    space = tmp_path / "bad.yaml"
    space.write_text("base: {dataset: tiny, epochs: 2}\nsearch:\n  alpha: {low: 4.0, high: 0.1}\n")
    result = imported_by(["run", str(space)], tmp_path)
    assert result["status"] == 2 and "search.alpha is reversed" in result["stderr"]
    assert set(result["heavy"]) <= {"torch"}


def test_the_sweep_driver_loads_neither_torch_nor_the_methods(tmp_path):
    """`mixsweep run`'s own process hands Tune a light entry; torch is the trial workers' (2 s of start-up)."""
    probe = ("import json, sys\n"
             "import mixsweep.sweep, mixsweep.callback, mixsweep.resume, trainables\n"
             "print(json.dumps(sorted(m for m in ('torch', 'sklearn', 'matplotlib', 'mixunlearn.methods') "
             "if m in sys.modules)))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_the_package_still_exports_the_method_api():
    import mixunlearn

    assert callable(mixunlearn.run) and mixunlearn.UnlearnConfig().epochs == 20
    assert {"run", "prepare", "evaluate", "MixUnlearn"} <= set(dir(mixunlearn))
    with pytest.raises(AttributeError):
        mixunlearn.no_such_name
