"""`mixsweep ui`: the MLflow UI over the tracking store, or optuna-dashboard over a sweep's Optuna study;
on 127.0.0.1 unless told otherwise.

    mixsweep ui                                   # ./mlflow.db (or $MLFLOW_TRACKING_URI) on port 5000
    mixsweep ui --tracking-uri sqlite:///$PWD/mlflow.db --port 5001
    mixsweep ui --optuna quick                    # optuna-dashboard on sweeps/quick/optuna.db, port 8080

The MLflow UI becomes `mlflow server` (exec: Ctrl-C or a SIGTERM reaches the server itself, nothing is
orphaned), with one worker and no job runner: that keeps it near 0.5 GB instead of ~3 GB. An http://
tracking URI is a server already: its URL is printed.

Every MLflow UI address the platform prints (here, and from `demo`, `run`, `ablate`, `report`) carries
`workflowType=machine_learning`: MLflow 3's UI otherwise opens an experiment in the mode the browser
last chose, GenAI by default, whose first page is a traces overview and whose runs sit one tab away.
The experiment's `mlflow.experimentKind` tag (tracking.py) says the same, but the UI does not switch on
it alone.
"""
from __future__ import annotations

import os
import socket
import sys

from . import tracking
from .errors import UsageError

MLFLOW_PORT = 5000           # MLflow's own default
OPTUNA_PORT = 8080           # optuna-dashboard's own default: both UIs can run side by side
WORKFLOW_TYPE = "machine_learning"   # the UI's "Model training" mode: runs, models, the model registry


def ui_url(base: str, experiment_id: str, run_id: str | None = None) -> str:
    """The MLflow UI address of an experiment's runs (or one run) on the server at `base`."""
    path = f"#/experiments/{experiment_id}/runs" + (f"/{run_id}" if run_id else "")
    return f"{base.rstrip('/')}/{path}?workflowType={WORKFLOW_TYPE}"


def ui_hint(uri: str, experiment_id: str, run_id: str | None = None) -> str:
    """Where to see the experiment (or run) of tracking store `uri`: the address on an http:// server;
    for a local store, the command that serves it and the address it then has."""
    if uri.startswith(("http://", "https://")):
        return ui_url(uri, experiment_id, run_id)
    return (f"{ui_url(f'http://127.0.0.1:{MLFLOW_PORT}', experiment_id, run_id)} after "
            f"`mixsweep ui --tracking-uri {uri}`")


def ui_command(uri: str, *, host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", host,
            "--port", str(port), "--workers", "1"]


def check_port(flag_port: int, host: str, port: int) -> None:
    with socket.socket() as probe:
        if probe.connect_ex((host, port)) == 0:
            raise UsageError(f"--port {flag_port}: something already listens on {host}:{port}; pass another --port")


def open_ui(*, tracking_uri: str | None = None, host: str = "127.0.0.1", port: int | None = None) -> int:
    uri = tracking.tracking_uri(tracking_uri)
    experiment_id = tracking.ready_experiment(uri)   # a fresh store gets its schema before the server reads it
    if uri.startswith(("http://", "https://")):
        print(f"MLflow UI: {ui_url(uri, experiment_id)}  (the tracking server itself)", flush=True)
        return 0
    port = port or MLFLOW_PORT
    check_port(port, host, port)
    base = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    print(f"MLflow UI: {ui_url(base, experiment_id)}  over {uri}  (Ctrl-C stops it)", flush=True)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = ui_command(uri, host=host, port=port)
    os.execve(command[0], command, env)


def open_optuna(sweep: str, *, storage: str | None = None, host: str = "127.0.0.1", port: int | None = None) -> int:
    """optuna-dashboard on the sweep's Optuna study (<sweep>/optuna.db), until Ctrl-C."""
    import optuna
    import optuna_dashboard

    from . import state as sweep_state

    state = sweep_state.load(sweep, storage)
    study_file = state.local_dir / "optuna.db"
    if not study_file.is_file():
        raise UsageError(f"--optuna {sweep}: no Optuna study at {study_file}; an ablation has none, and a sweep "
                         "writes it when `mixsweep run` starts")
    port = port or OPTUNA_PORT
    check_port(port, host, port)
    storage_obj = optuna.storages.RDBStorage(state.optuna_url)
    try:
        study_id = storage_obj.get_study_id_from_name(state.name)
    except KeyError:
        raise UsageError(f"--optuna {sweep}: {study_file} holds no study named {state.name!r}") from None
    base = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    print(f"optuna-dashboard: {base}/dashboard/studies/{study_id}  over {study_file}  (Ctrl-C stops it)", flush=True)
    try:
        optuna_dashboard.run_server(storage_obj, host=host, port=port)
    except KeyboardInterrupt:
        pass
    return 0
