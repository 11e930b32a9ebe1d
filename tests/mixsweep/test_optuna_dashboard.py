"""`mixsweep ui --optuna SWEEP`: optuna-dashboard on the sweep's Optuna study, asked over real HTTP."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import optuna
import pytest

START_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def dashboard(recorded_sweep, cli_env):
    """The running `mixsweep ui --optuna` (its own process group): (base URL, the line it printed)."""
    state, _ = recorded_sweep
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "mixsweep", "ui", "--optuna", state.name, "--storage",
                                state.storage, "--port", str(port)], env=cli_env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        printed = process.stdout.readline()
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                get_json(f"{base}/api/meta")
                break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None, printed + process.stdout.read()
                assert time.monotonic() < deadline, f"optuna-dashboard did not answer on {base}"
                time.sleep(0.5)
        yield base, printed
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_the_dashboard_lists_the_study_and_its_trials(recorded_sweep, dashboard):
    state, _ = recorded_sweep
    base, printed = dashboard
    study = optuna.load_study(study_name=state.name, storage=state.optuna_url)
    study_id = study._study_id
    assert printed.startswith(f"optuna-dashboard: {base}/dashboard/studies/{study_id} "), printed

    summaries = get_json(f"{base}/api/studies")["study_summaries"]
    assert [s["study_name"] for s in summaries] == [state.name]
    detail = get_json(f"{base}/api/studies/{study_id}?after=0")
    trials = detail["trials"]
    assert len(trials) == state.trials == len(study.trials)
    # A trial ASHA stopped after epoch 1 shows as Pruned, not as a result (records mean what they say).
    assert {t["state"] for t in trials} <= {"Complete", "Pruned"} and "Complete" in {t["state"] for t in trials}
    for shown, trial in zip(sorted(trials, key=lambda t: t["number"]), study.trials):
        assert shown["state"].upper() == trial.state.name
        assert {p["name"] for p in shown["params"]} == {"alpha", "omega", "lr_unlearner"}
        assert shown["values"] == pytest.approx(trial.values)
    with urllib.request.urlopen(f"{base}/dashboard/studies/{study_id}", timeout=10) as page:
        assert page.status == 200 and b"<html" in page.read().lower()


def test_a_taken_port_is_refused_in_one_sentence(recorded_sweep, cli_env):
    state, _ = recorded_sweep
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "mixsweep", "ui", "--optuna", state.name, "--storage",
                               state.storage, "--port", str(port)], env=cli_env, capture_output=True, text=True,
                              timeout=120)
    assert done.returncode == 2
    assert re.fullmatch(rf"mixsweep: error: --port {port}: something already listens on 127.0.0.1:{port}; "
                        r"pass another --port\n", done.stderr), done.stderr
