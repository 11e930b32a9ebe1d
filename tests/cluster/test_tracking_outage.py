"""A trial through a tracking-server outage: a real server stopped mid-run and started again on the same
store. The trial keeps training while it is down, keeps the points it could not send, and sends them
when the server is back; a run whose points cannot be sent is not closed as complete."""
import socket
import threading
import time

import pytest
from mlflow.tracking import MlflowClient

from trainables import delivery, records

EPOCH_S = 0.5        # the simulated training time of an epoch
BOUND_S = 2          # the retry bound for this test (MIXSWEEP_TRACKING_RETRY_S; default 120)
EPOCHS_AFTER = 3     # epochs the trial trains once the server is back


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def steps(client, run_id, key):
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_a_trial_keeps_training_through_a_server_restart_and_every_point_arrives(mlflow_launcher, tmp_path,
                                                                                 monkeypatch):
    # MLflow's own HTTP retries off, so the bound is this one alone and the test is short.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv(delivery.RETRY_ENV, str(BOUND_S))
    state, port, store = tmp_path / "server", free_port(), f"sqlite:///{tmp_path / 'mlflow.db'}"
    url = mlflow_launcher.start(state, port=port, backend_store_uri=store)["url"]
    client = records.client(url)
    experiment = client.create_experiment("outage")
    parent = records.open_run(client, experiment_id=experiment, run_name="sweep", kind="sweep", params={})
    trial_run, other_run = (records.open_child_run(client, experiment_id=experiment, parent_run_id=parent,
                                                   trial_id=name, run_name=name, params={"alpha": 0.5})
                            for name in ("trial_0", "trial_1"))
    records.log_metrics(client, other_run, {"avg_gap": 3.0}, step=1)

    down, back = threading.Event(), threading.Event()
    trained_while_down, kept_while_down, errors = [], [], []

    def trial():
        try:
            epoch, after = 0, 0
            while after < EPOCHS_AFTER:
                epoch += 1
                time.sleep(EPOCH_S)   # training
                records.log_metrics(client, trial_run, {"epoch": epoch, "avg_gap": 10.0 / epoch}, step=epoch)
                if back.is_set():
                    after += 1
                elif down.is_set():
                    trained_while_down.append(epoch)
                    kept_while_down.append(len(delivery.unsent(trial_run)))
            records.close_run(client, trial_run, "FINISHED")
        except Exception as error:   # noqa: BLE001 - the assertion below shows it
            errors.append(error)

    training = threading.Thread(target=trial)
    training.start()
    try:
        time.sleep(4 * EPOCH_S)
        mlflow_launcher.stop(state)
        down.set()
        # Meanwhile another trial ends while the server is down: its last point cannot be sent, so its
        # run cannot be closed FINISHED, and the trial says so instead of dropping the point.
        records.log_metrics(client, other_run, {"avg_gap": 2.0}, step=2)
        assert len(delivery.unsent(other_run)) == 1
        with pytest.raises(delivery.UnsentMetrics, match=f"1 metric points of MLflow run {other_run}"):
            records.close_run(client, other_run, "FINISHED")
        time.sleep(4 * EPOCH_S)
    finally:
        mlflow_launcher.start(state, port=port, backend_store_uri=store)   # the same store, the same URL
        back.set()
        training.join(timeout=120)
    try:
        assert not training.is_alive() and errors == []
        # It trained on while the server was down (the restart alone takes seconds), keeping its points.
        assert len(trained_while_down) >= 5, trained_while_down
        assert max(kept_while_down) >= 3, kept_while_down
        assert delivery.unsent(trial_run) == []
        reader = MlflowClient(url)
        last = trained_while_down[-1] + EPOCHS_AFTER
        assert steps(reader, trial_run, "epoch") == list(range(1, last + 1))      # each point once
        assert steps(reader, trial_run, "avg_gap") == list(range(1, last + 1))
        assert reader.get_run(trial_run).info.status == "FINISHED"

        # The other run stayed open with its point missing; closing it now sends the point first.
        assert reader.get_run(other_run).info.status == "RUNNING"
        assert steps(reader, other_run, "avg_gap") == [1]
        records.close_run(client, other_run, "FINISHED")
        assert steps(reader, other_run, "avg_gap") == [1, 2]
        assert reader.get_run(other_run).info.status == "FINISHED"
    finally:
        mlflow_launcher.stop(state)
