"""The addresses `mixsweep ui` prints, opened in headless Chromium: the sweep's runs in MLflow's "Model
training" mode, not the GenAI overview a fresh browser profile gets by default.

- over the session's MLflow server (`mixsweep ui --tracking-uri http://...` prints the server's address);
- over a local SQLite store, as the demo leaves it (`mixsweep ui` serves it; the demo prints the same
  address for port 5000).
The screenshots are kept in test-artifacts/ui/ of the checkout ($MIXSWEEP_TEST_ARTIFACTS moves it); each
test prints where.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from browser import Chromium, chromium_binary
from mixsweep.tracking import EXPERIMENT, EXPERIMENT_KIND
from mixsweep.ui import MLFLOW_PORT, ui_hint

pytestmark = pytest.mark.skipif(chromium_binary() is None,
                                reason="no Chromium: `bash scripts/setup.sh --test` installs it")

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("MIXSWEEP_TEST_ARTIFACTS") or ROOT / "test-artifacts") / "ui"
ADDRESS = re.compile(r"MLflow UI: (\S+)")
SERVE_TIMEOUT_S = 120
# What only the UI's "Model training" mode shows in its side bar, and what only its GenAI mode shows.
TRAINING_NAV = ("Runs", "Models", "Model registry")
GENAI_ONLY = ("Overview", "Sessions", "Evaluations", "Prompts")


def run_link(run_id: str) -> str:
    return f"document.querySelector('a[href*=\"/runs/{run_id}\"]')"


def open_in_chromium(url: str, run_id: str, shot: Path, tmp_path: Path) -> dict[str, str]:
    """The page at `url` once the row of `run_id` is drawn: its side bar, its runs table, its screenshot."""
    browser = Chromium(chromium_binary(), tmp_path / "profile", tmp_path / "chromium.log")
    try:
        browser.open(url)
        browser.wait_for(f"!!{run_link(run_id)}", timeout=120)
        page = {"href": browser.evaluate("location.href"),
                "nav": browser.evaluate("(document.querySelector('nav') || document.body).innerText"),
                "grid": browser.evaluate("document.querySelector('[role=grid]').innerText")}
        shot.parent.mkdir(parents=True, exist_ok=True)
        browser.screenshot(shot)
    finally:
        browser.close()
    print(f"screenshot of {url}: {shot}")
    return page


def assert_training_mode(page: dict[str, str]) -> None:
    nav = page["nav"].splitlines()
    assert all(item in nav for item in TRAINING_NAV), page["nav"]
    assert not any(item in nav for item in GENAI_ONLY), page["nav"]
    assert "/runs" in page["href"] and "workflowType=machine_learning" in page["href"]


def test_the_address_of_mixsweep_ui_over_the_server_shows_the_sweeps_runs(recorded_sweep, mlflow_server, cli_env,
                                                                       tmp_path):
    state, _ = recorded_sweep
    done = subprocess.run([sys.executable, "-m", "mixsweep", "ui", "--tracking-uri", mlflow_server], env=cli_env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    url = ADDRESS.search(done.stdout).group(1)
    assert url == f"{mlflow_server}/#/experiments/{state.experiment_id}/runs?workflowType=machine_learning"
    client = MlflowClient(mlflow_server)
    assert client.get_experiment(state.experiment_id).tags.items() >= EXPERIMENT_KIND.items()

    page = open_in_chromium(url, state.parent_run_id, ARTIFACTS / "mixsweep-ui-server.png", tmp_path)
    assert_training_mode(page)
    rows = page["grid"].split("\n")
    assert state.name in rows   # the sweep's parent run, its trials folded under it
    assert "tiny" in page["grid"]   # its Dataset cell: the data the trials logged as their input


@pytest.fixture
def demo_store(recorded_sweep, cli_env, tmp_path):
    """A local SQLite store as the demo leaves one (./mlflow.db, artifacts beside it) with one run in it:
    `mixsweep train` of the recorded sweep's best config (its reference models are in the session cache)."""
    state, _ = recorded_sweep
    config = dict(yaml.safe_load(Path(state.space_file).read_text())["base"])
    path = tmp_path / "best.yaml"
    path.write_text(yaml.safe_dump({**config, "epochs": 1}, sort_keys=False))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = subprocess.run([sys.executable, "-m", "mixsweep", "train", str(path), "--tracking-uri", uri],
                          env=cli_env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    run_id = re.search(r"MLflow run ([0-9a-f]{32})", done.stdout).group(1)
    return uri, run_id


def answers(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_address_mixsweep_ui_serves_a_local_store_on_shows_its_runs(demo_store, cli_env, tmp_path):
    uri, run_id = demo_store
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "mixsweep", "ui", "--tracking-uri", uri, "--port", str(port)],
                              env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    try:
        printed = server.stdout.readline()
        url = ADDRESS.search(printed).group(1)
        experiment_id = MlflowClient(uri).get_experiment_by_name(EXPERIMENT).experiment_id
        assert url == f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
        # The demo prints this address for the default port, with the command that serves it.
        assert ui_hint(uri, experiment_id) == (f"{url.replace(str(port), str(MLFLOW_PORT))} after "
                                               f"`mixsweep ui --tracking-uri {uri}`")
        deadline = time.monotonic() + SERVE_TIMEOUT_S
        while not answers(port):
            assert server.poll() is None and time.monotonic() < deadline, printed + (server.stdout.read() or "")
            time.sleep(0.5)
        page = open_in_chromium(url, run_id, ARTIFACTS / "mixsweep-ui-local-store.png", tmp_path)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    assert_training_mode(page)
    assert "train-best" in page["grid"].split("\n")
