"""Where MLflow records go, and the store made ready before any trial writes to it.

    uri = tracking_uri(flag)                 # --tracking-uri, else $MLFLOW_TRACKING_URI, else ./mlflow.db
    load_store_code(uri)                     # optional, e.g. while Ray starts: the store's code, no file
    experiment_id = ready_experiment(uri)    # creates the SQLite schema and the experiment once, here

Trials start together and write at once; two processes creating a fresh SQLite schema at the same time
corrupt it or fail. So the driver creates the schema (and the experiment, with an absolute artifact
folder beside the database) before the first trial starts. With an http:// URI the server owns both.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from .errors import UsageError

EXPERIMENT = "mixsweep"   # one experiment: sweeps (parent + children) and `mixsweep train` runs side by side
# MLflow 3 sorts experiments into GenAI and model-training ones; ours train models (ui.py: the UI's mode).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
SCHEMES = ("sqlite:///", "http://", "https://")


def tracking_uri(flag: str | None) -> str:
    """The tracking URI to use: the flag, $MLFLOW_TRACKING_URI, or a SQLite file in the working directory."""
    uri = flag or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    if not uri.startswith(SCHEMES):
        raise UsageError(f"--tracking-uri {uri}: use sqlite:///ABSOLUTE/PATH.db or the http:// URL of an "
                         "MLflow server")
    if uri.startswith("sqlite:///"):
        folder = sqlite_path(uri).parent
        if not folder.is_dir():
            raise UsageError(f"--tracking-uri {uri}: the folder {folder} does not exist; create it or point "
                             "the URI elsewhere")
        # Absolute: trials run in Tune's trial directories, where a relative path means another file.
        uri = f"sqlite:///{sqlite_path(uri)}"
    return uri


def sqlite_path(uri: str) -> Path:
    """The database file of a sqlite:/// URI (sqlite:////abs/path.db and sqlite:///rel/path.db)."""
    return Path(uri.removeprefix("sqlite:///")).resolve()


def ready_experiment(uri: str, name: str = EXPERIMENT) -> str:
    """Create the store's schema and the experiment if missing; return the experiment id."""
    client = MlflowClient(uri)
    try:
        client.search_experiments(max_results=1)   # creates (or upgrades) a SQLite schema, once, here
    except Exception as error:   # noqa: BLE001 - connection refused, bad database: one sentence for the user
        raise UsageError(f"--tracking-uri {uri}: MLflow cannot use this store ({type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''}); start the server or fix the "
                         "URI") from None
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        for key, value in EXPERIMENT_KIND.items():   # a store made before the tag existed gets it now
            if experiment.tags.get(key) != value:
                client.set_experiment_tag(experiment.experiment_id, key, value)
        return experiment.experiment_id
    # A local store keeps artifacts in an absolute folder beside the database: trials run in Tune's trial
    # directories, where MLflow's default ./mlruns would scatter them.
    location = (sqlite_path(uri).parent / "mlartifacts").as_uri() if uri.startswith("sqlite:///") else None
    return client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND)


def load_store_code(uri: str) -> None:
    """Import the code of the store `uri` names, touching no file: with sqlite:/// MLflow's SQLAlchemy
    store (SQLAlchemy and alembic, ~0.9 s), which `ready_experiment` would otherwise load then."""
    if uri.startswith("sqlite:///"):
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401


def git_commit() -> dict[str, str]:
    """Tags naming the code that ran: the command (MLflow's Source column), the commit, and whether the
    working tree had changes."""
    here = Path(__file__).resolve().parent
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    command = shlex.join(["mixsweep", *sys.argv[1:]]) if program in ("mixsweep", "__main__.py") else \
        shlex.join(sys.argv or ["python"])
    source = {"mlflow.source.name": command[:500], "mlflow.source.type": "LOCAL"}

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return source
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {**source, "mlflow.source.git.commit": commit, "mixsweep.git_dirty": str(bool(dirty)).lower()}
