"""The tracking server at the cluster's scale: 32 trials at once (8 per GPU, 4 GPU workers), each through
trainables/records.py, against a real server on 127.0.0.1 started by the head's launcher, on the SQLite
default and on PostgreSQL. Every run closes FINISHED and every metric point is in the store, counted
there with SQL. (The timings and N = 128 are benchmarks/tracking_load.py's; here epochs are few.)"""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRIALS = 32


def load_benchmark():
    spec = importlib.util.spec_from_file_location("tracking_load", ROOT / "benchmarks" / "tracking_load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def thirty_two_trials(url, store_uri, tmp_path):
    return load_benchmark().run_load(url, store_uri, TRIALS, epochs=3, epoch_seconds=0.5, clients=0,
                                     artifact_mb=1.0, work_dir=tmp_path)


def assert_nothing_lost(result):
    assert result["failed_calls"] == 0, result["first_errors"]
    assert result["runs_created"] == TRIALS        # one run per trial: none missing, none doubled
    assert result["runs_not_finished"] == 0
    assert result["points_sent"] == TRIALS * 3 * 15
    assert result["lost_points"] == 0, result


def test_32_trials_at_once_on_the_sqlite_default_lose_nothing(mlflow_launcher, mlflow_server, mlflow_server_state,
                                                             tmp_path):
    # The session's server is the launcher's SQLite default; `--trials 32` would size it no differently.
    store_uri = f"sqlite:///{mlflow_server_state / 'mlflow.db'}"
    assert mlflow_launcher.sizing(TRIALS, store_uri, several_hosts=False) == \
        mlflow_launcher.sizing(mlflow_launcher.DEFAULT_TRIALS, store_uri, several_hosts=False)
    assert_nothing_lost(thirty_two_trials(mlflow_server, store_uri, tmp_path))


def test_32_trials_at_once_on_postgresql_lose_nothing(mlflow_launcher, postgres_store, tmp_path):
    state = tmp_path / "server"
    server = mlflow_launcher.start(state, port=load_benchmark().free_port(), backend_store_uri=postgres_store,
                                   trials=TRIALS)
    try:
        assert_nothing_lost(thirty_two_trials(server["url"], postgres_store, tmp_path))
    finally:
        mlflow_launcher.stop(state)
