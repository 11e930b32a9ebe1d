"""The GPU check (benchmarks/gpu_check.sh) on the CPU: its rehearsal runs every part and writes each
part's JSON; a part that raises or hangs is recorded and the later parts run; the budget stops a hung
part and the run ends by itself; without scikit-learn the attackers' parts are skipped; it finds its
interpreter and its wheels wherever they are and installs only what the interpreter lacks; and what
travels to the GPU machine fits in 64 MiB.

Each run is the real script in its own processes, as on the GPU machine.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_carry  # noqa: E402
from gpu_check import PARTS  # noqa: E402

SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
FILES = sorted([p.file for p in PARTS] + ["summary.md", "gpu_check.log"])
CIFAR10_ARCHIVE = "cifar10-images-*.tar.gz"


def cifar10_archive() -> bool:
    from mixunlearn.data import shared_data_dirs

    return any(d.is_dir() and any(d.glob(CIFAR10_ARCHIVE)) for d in [*shared_data_dirs(), ROOT / ".gpu-data"])


needs_cifar10 = pytest.mark.skipif(not cifar10_archive(), reason=f"no {CIFAR10_ARCHIVE} in the shared data folder "
                                   "or .gpu-data/ (python benchmarks/gpu_carry.py prepare copies it there)")


def check(out: Path, *args: str, env: dict | None = None, timeout: float = 300, cwd: Path = ROOT,
          python: str | None = None) -> tuple[subprocess.CompletedProcess, dict[str, dict]]:
    """bash benchmarks/gpu_check.sh ARGS --out OUT; its exit, and each part's record by name."""
    environment = {**(env or os.environ), **({"PYTHON": python} if python else {})}
    done = subprocess.run(["bash", str(SCRIPT), "--out", str(out), *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=timeout)
    records = {p.name: json.loads((out / p.file).read_text()) for p in PARTS if (out / p.file).is_file()}
    return done, records


# ---- the rehearsal --------------------------------------------------------------------------------------

# The rehearsal's caps fit an idle 2-core machine (about 90 s in all); the suite shares its cores with
# other work, so this run gives each part 3x its cap: what is checked is that every part runs.
GENEROUS = ["--budget", "480", "--cap", "setup=120", "--cap", "methods=180", "--cap", "anchor=90",
            "--cap", "evaluation=135", "--cap", "packing=135"]


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    out = tmp_path_factory.mktemp("rehearsal")
    started = time.monotonic()
    done, records = check(out, "--rehearse", *GENEROUS, timeout=600)
    return done, records, out, time.monotonic() - started


@pytest.mark.slow
@needs_cifar10
def test_the_rehearsal_runs_every_part_and_writes_its_json(rehearsal):
    done, records, out, wall = rehearsal
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    assert sorted(p.name for p in out.iterdir()) == FILES           # the 8 files that come back from $OUT
    assert {name: r["status"] for name, r in records.items()} == {p.name: "ok" for p in PARTS}, log[-6000:]
    assert all(r["mode"] == "rehearsal" and r["process"]["pid"] for r in records.values())

    setup = records["setup"]["results"]
    assert setup["attackers"]["importable"] and setup["data"]["train"] == [50000, 3, 32, 32]
    assert {d["dist"] for d in setup["wheels"]["distributions"]} >= {"scikit-learn", "joblib", "threadpoolctl"} \
        or not setup["wheels"]["present"]

    from mixunlearn.methods import METHODS
    methods = records["methods"]["results"]["methods"]
    assert [r["method"] for r in methods] == list(METHODS)
    for row in methods:
        assert row["status"] == "ok" and not row["nan"] and row["images_per_s"] > 0 and row["steps_per_s"] > 0, row
        assert row["ratio_to_plain"] > 0 and row["batch_size"] <= 8, row   # the rehearsal caps batches at 8
        assert row["bf16_regions_on_cpu"] > 0, row   # the method's CUDA autocast regions ran, as CPU bf16

    anchor = records["anchor"]["results"]
    assert [r["batch"] for r in anchor["rows"]] == [4] and anchor["rows"][0]["pairs_per_s"] > 0
    assert anchor["mixblock_bf16"]["spatial_std_float32"] > 0 and anchor["mixblock_bf16"]["mean_abs_error"] > 0

    trial = records["evaluation"]["results"]["trial"]
    assert trial["attack_epochs"] == [2, 3] and "(in the background)" in trial["evaluation"], trial
    assert {2, 3} <= set(trial["accuracies_at"]) and 0 < trial["evaluation_share_per_trial"] < 1
    assert 0 < records["evaluation"]["results"]["paper_trial_projection"]["share"] < 1

    runs = records["packing"]["results"]["runs"]
    assert [(r["processes"], r["status"]) for r in runs] == [(1, "ok"), (2, "ok")], runs
    assert all(len(r["per_process_pairs_per_s"]) == r["processes"] and r["aggregate_pairs_per_s"] > 0 for r in runs)
    assert records["packing"]["results"]["recommendation"]["gpus_per_trial"] in (1.0, 0.5)

    forgetting = records["forgetting"]["results"]
    assert set(forgetting["rows"]) == {"f_D", "Retrain", "MixUnlearn", "SCRUB"}
    assert all("avg_gap" in row and "mia_efficacy" in row for row in forgetting["rows"].values())
    assert forgetting["plan"]["references_from_part_4"]   # part 4's one-epoch references, from the cache
    print(f"rehearsal: {wall:.0f} s on this machine (load {os.getloadavg()[0]:.1f})")


@pytest.mark.slow
@needs_cifar10
def test_the_rehearsal_summary_names_every_part_and_says_it_is_no_gpu_figure(rehearsal):
    _done, _records, out, _wall = rehearsal
    summary = (out / "summary.md").read_text()
    assert summary.startswith("# GPU check (rehearsal)") and "None of these figures is a GPU figure" in summary
    for part in PARTS:
        assert f"| {part.number} {part.name} | ok |" in summary
    assert "| scrub |" in summary and "MixUnlearn" in summary and "--gpus-per-trial" in summary
    assert "16 of 16 methods ran" in summary
    assert "[gpu_check" in (out / "gpu_check.log").read_text()


# ---- failures, hangs and the guard ----------------------------------------------------------------------

@needs_cifar10
def test_a_part_that_raises_or_hangs_is_recorded_and_the_later_parts_still_run(tmp_path):
    done, records = check(tmp_path, "--rehearse", "--parts", "setup,methods,anchor", "--fail-part", "setup",
                          "--hang-part", "methods", "--cap", "methods=4", "--cap", "anchor=150", "--budget", "300")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    failed, hung, later = records["setup"], records["methods"], records["anchor"]
    assert failed["status"] == "failed" and "injected failure" in failed["error"] and "Traceback" in failed["traceback"]
    assert hung["status"] == "timed_out" and "stopped at its cap of 4 s" in hung["reason"]
    assert hung["seconds"] < 4 + 10
    with pytest.raises(ProcessLookupError):   # the hung process was killed, not left behind
        os.kill(hung["process"]["pid"], 0)
    assert later["status"] == "ok" and later["results"]["rows"]
    assert set(records) == {"setup", "methods", "anchor"}
    summary = (tmp_path / "summary.md").read_text()
    assert "| 1 setup | failed |" in summary and "| 2 methods | timed_out |" in summary and "| 3 anchor | ok |" in summary


def test_the_budget_stops_a_hung_part_and_the_run_ends_by_itself(tmp_path):
    started = time.monotonic()
    done, records = check(tmp_path, "--rehearse", "--parts", "setup,methods,forgetting", "--hang-part", "setup",
                          "--budget", "6", timeout=120)
    wall = time.monotonic() - started
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert wall < 6 + 20, wall   # the budget, the kill's grace, the interpreter's start
    assert records["setup"]["status"] == "timed_out" and "cap of 6 s" in records["setup"]["reason"]
    for name in ("methods", "forgetting"):
        assert records[name]["status"] == "skipped" and "not enough time left" in records[name]["reason"]
    assert "| 1 setup | timed_out |" in (tmp_path / "summary.md").read_text()


def test_without_scikit_learn_the_attackers_parts_are_skipped_and_the_rest_runs(tmp_path):
    broken = tmp_path / "broken" / "sklearn"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('scikit-learn is broken here (the test hides it)')\n")
    env = {**os.environ, "PYTHONPATH": f"{broken.parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done, records = check(tmp_path / "out", "--rehearse", "--parts", "setup,evaluation,forgetting",
                          "--wheels", str(tmp_path / "no-wheels"), env=env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    attackers = records["setup"]["results"]["attackers"]
    assert not attackers["importable"] and "the test hides it" in attackers["error"]
    assert not records["setup"]["results"]["wheels"]["present"]
    for name in ("evaluation", "forgetting"):
        assert records[name]["status"] == "skipped" and "scikit-learn cannot be imported" in records[name]["reason"]


# ---- what travels, and where the interpreter and the wheels are -----------------------------------------

def wheel(folder: Path, dist: str, version: str = "1.0") -> Path:
    """A real, minimal pure-Python wheel of a module `dist` holding VERSION."""
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    info = f"{dist}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{dist}/__init__.py", f"VERSION = {version!r}\n")
        archive.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", "")
    return path


@pytest.fixture
def venv_under_tmp():
    """A bare virtual environment under /tmp (no pip, numpy, torch or scikit-learn), as a fresh clone's."""
    folder = Path(tempfile.mkdtemp(prefix="mxs-gpu-venv-", dir="/tmp"))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder / "venv")], check=True, timeout=120)
    yield folder / "venv"
    shutil.rmtree(folder, ignore_errors=True)


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def test_the_check_finds_an_interpreter_under_tmp_and_installs_only_the_wheels_it_lacks(tmp_path, venv_under_tmp):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheel(wheels, "mxs_probe_had")) as had:   # the interpreter already has this one
        had.extractall(site_packages(venv_under_tmp))
    wheel(wheels, "mxs_probe_lacked")
    work = tmp_path / "work"
    python = str(venv_under_tmp / "bin" / "python")
    done, records = check(tmp_path / "out", "--rehearse", "--parts", "setup", "--wheels", str(wheels), "--work",
                          str(work), python=python, cwd=tmp_path)   # not from the repository root
    setup = records["setup"]["results"]
    assert setup["interpreter"]["python"] == python, (done.stdout + done.stderr)[-3000:]
    sources = {d["dist"]: d["source"] for d in setup["wheels"]["distributions"]}
    assert sources == {"mxs-probe-had": "image", "mxs-probe-lacked": "wheel"} and setup["wheels"]["installed"] == \
        ["mxs-probe-lacked"]
    assert setup["wheels"]["distributions"][1]["how"].startswith("unzipped")   # this venv has no pip
    imported = subprocess.run([python, "-c", "import mxs_probe_lacked as m; print(m.VERSION)"], capture_output=True,
                              text=True, env={"PYTHONPATH": str(work / "site")})
    assert imported.stdout.strip() == "1.0", imported.stderr
    # No torch in this interpreter: the part says so, and the steps after it still ran.
    assert records["setup"]["status"] == "failed" and "torch" in setup["torch"]["error"]
    assert not setup["attackers"]["importable"] and "fingerprint" in setup["code"]


@pytest.mark.skipif(not (ROOT / gpu_carry.WHEELS_DIR).is_dir(),
                    reason="no .gpu-wheels/ here: `python benchmarks/gpu_carry.py prepare` downloads them")
def test_the_carried_scikit_learn_wheel_installs_where_the_interpreter_lacks_it(tmp_path, venv_under_tmp):
    done, records = check(tmp_path / "out", "--rehearse", "--parts", "setup", "--work", str(tmp_path / "work"),
                          python=str(venv_under_tmp / "bin" / "python"))
    installed = records["setup"]["results"]["wheels"]["installed"]
    assert {"scikit-learn", "joblib", "threadpoolctl", "narwhals", "cloudpickle"} <= set(installed), done.stdout[-3000:]
    assert (tmp_path / "work" / "site" / "sklearn" / "__init__.py").is_file()


def test_what_travels_fits_in_64_mib():
    report = gpu_carry.budget(ROOT)
    assert report["fits"], gpu_carry.budget_text(report)
    wheels, data = report["folders"][gpu_carry.WHEELS_DIR], report["folders"][gpu_carry.DATA_DIR]
    assert wheels["bytes"] > 20 * 2**20 and data["bytes"] > 18 * 2**20, gpu_carry.budget_text(report)
    recorded = gpu_carry.read_manifest()
    for folder in (gpu_carry.WHEELS_DIR, gpu_carry.DATA_DIR):   # where prepared here, what the manifest says
        here = {str(p.relative_to(ROOT)): p.stat().st_size for p in gpu_carry.carried_files(ROOT)
                if p.parent.name == folder}
        if here:
            assert here == {k: v for k, v in recorded.items() if k.startswith(folder + "/")}


def test_a_scikit_learn_wheel_is_carried_for_each_cpython_the_image_may_have():
    names = [Path(path).name for path in gpu_carry.read_manifest() if "scikit_learn" in path]
    for minor in (11, 12, 13):   # the GPU image's python3 is 3.12 as seen; 3.11 and 3.13 in case it moves
        fitting = [n for n in names if f"-cp3{minor}-" in n]
        assert len(fitting) == 1, names
    here = [n for n in names if gpu_carry.fits_here(Path(n))]
    assert len(here) == (1 if f"cp{sys.version_info.major}{sys.version_info.minor}" in " ".join(names) else 0), here
