"""`mixsweep ui`: the MLflow UI over the configured tracking store, on 127.0.0.1 unless told otherwise.

    mixsweep ui                                   # ./mlflow.db (or $MLFLOW_TRACKING_URI) on port 5000
    mixsweep ui --tracking-uri sqlite:///$PWD/mlflow.db --port 5001

Becomes `mlflow server` (exec: Ctrl-C or a SIGTERM reaches the server itself, nothing is orphaned), with
one worker and no job runner: that keeps it near 0.5 GB instead of ~3 GB. An http:// tracking URI is a
server already: its URL is printed.
"""
from __future__ import annotations

import os
import socket
import sys

from . import tracking
from .errors import UsageError


def ui_command(uri: str, *, host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", host,
            "--port", str(port), "--workers", "1"]


def open_ui(*, tracking_uri: str | None = None, host: str = "127.0.0.1", port: int = 5000) -> int:
    uri = tracking.tracking_uri(tracking_uri)
    if uri.startswith(("http://", "https://")):
        print(f"MLflow UI: {uri}  (the tracking server itself)", flush=True)
        return 0
    with socket.socket() as probe:
        if probe.connect_ex((host, port)) == 0:
            raise UsageError(f"--port {port}: something already listens on {host}:{port}; pass another --port")
    tracking.ready_experiment(uri)   # a fresh store gets its schema before the server reads it
    print(f"MLflow UI: http://{host}:{port}  over {uri}  (Ctrl-C stops it)", flush=True)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = ui_command(uri, host=host, port=port)
    os.execve(command[0], command, env)


def ui_hint(uri: str) -> str:
    """The command that opens the UI over `uri`, for the end of a sweep or the demo."""
    return f"mixsweep ui --tracking-uri {uri}"
