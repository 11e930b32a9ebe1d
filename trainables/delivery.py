"""Getting tracking calls through a busy or restarting MLflow server: bounded retries, and the metric
points a trial could not send kept until the server answers again.

- `patiently(call, what)`: `call()`, retried on a transient failure (no connection, a timeout, HTTP 5xx,
  429, and the server's database pool or lock timing out, which MLflow answers as 400) with exponential
  backoff and jitter, for MIXSWEEP_TRACKING_RETRY_S seconds from the first try
  (default 120); then TrackingUnavailable. Each try is itself MLflow's HTTP request, which MLflow
  already retries (MLFLOW_HTTP_REQUEST_MAX_RETRIES, default 7 with backoff factor 2: about 4 minutes
  when nothing answers), so a try ends by itself and the bound is the larger of the two. A user error
  (HTTP 4xx: a bad value, a missing run) is raised at once.
- `send_metrics(client, run_id, points)`: the points are queued for the run and the queue is sent,
  oldest first, through `patiently`. If that gives up, the points stay queued and the call returns:
  the trial keeps training. While the server is known to be down, a later call first asks its /health
  (two seconds at most) and sends only if it answers, so an epoch is not held up for the full bound.
- `send_unsent(client, run_id)`: what is still queued, sent patiently; UnsentMetrics if it cannot be.
  records.close_run calls it before it closes a run.

Re-sending is safe: a point keeps the timestamp it was given, and MLflow's SQL store ignores a point
it already holds (same key, step, timestamp and value). The queue is this process's memory: a process
that exits with points still queued (a trial ASHA stopped while the server was down) says so in its
log, run by run, as it exits.
"""
from __future__ import annotations

import atexit
import logging
import os
import random
import threading
import time
import urllib.request
from typing import Callable, TypeVar

import requests
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException, RestException
from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

RETRY_ENV = "MIXSWEEP_TRACKING_RETRY_S"
DEFAULT_RETRY_S = 120.0     # a 30 s server restart and then some; MLflow's own retries come on top
FIRST_PAUSE_S = 1.0
LONGEST_PAUSE_S = 30.0
HEALTH_TIMEOUT_S = 2.0
METRICS_PER_CALL = 1000     # MLflow's limit of metrics in one log_batch
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# Server overload that MLflow answers as 400 BAD_REQUEST: its database pool or lock timed out.
OVERLOAD_MESSAGES = ("QueuePool limit", "database is locked", "too many clients")

T = TypeVar("T")


class TrackingUnavailable(RuntimeError):
    """The tracking server did not answer (or kept failing) for the whole retry bound."""


class UnsentMetrics(RuntimeError):
    """Metric points of a run that could not be sent: the run must not be closed as complete."""


def retry_seconds() -> float:
    text = os.environ.get(RETRY_ENV, "")
    if not text:
        return DEFAULT_RETRY_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if seconds < 0:
        raise ValueError(f"{RETRY_ENV}={text!r}: give the seconds to retry a tracking call, e.g. 120")
    return seconds


def transient(error: BaseException) -> bool:
    """Whether trying again later may succeed: the server unreachable, overloaded or restarting."""
    if isinstance(error, RestException):
        return (error.get_http_status_code() in TRANSIENT_STATUS
                or any(message in str(error.message) for message in OVERLOAD_MESSAGES))
    if isinstance(error, requests.HTTPError):
        return error.response is not None and error.response.status_code in TRANSIENT_STATUS
    if isinstance(error, MlflowException):
        # MLflow's wrapping of a request that failed at the HTTP level, after its own retries.
        return str(error.message).startswith("API request to")
    return isinstance(error, (requests.RequestException, ConnectionError, TimeoutError))


def patiently(call: Callable[[], T], what: str) -> T:
    """`call()`, retried through transient failures for retry_seconds(); see the module docstring."""
    bound = retry_seconds()
    started = time.monotonic()
    pause = FIRST_PAUSE_S
    while True:
        try:
            return call()
        except Exception as error:   # noqa: BLE001 - sorted just below: transient ones are retried
            if not transient(error):
                raise
            waited = time.monotonic() - started
            if waited + pause > bound:
                raise TrackingUnavailable(f"could not {what}: the MLflow server kept failing for {waited:.0f} s "
                                          f"({RETRY_ENV}={bound:.0f}); last error: {error}") from error
            log.info("could not %s (%s); retrying in %.0f s", what, error, pause)
        time.sleep(pause * random.uniform(0.5, 1.5))
        pause = min(2 * pause, LONGEST_PAUSE_S)


# ---- the metric points not yet on the server --------------------------------------------------------

_lock = threading.Lock()
_unsent: dict[str, list[Metric]] = {}   # run id -> its points not yet sent, oldest first
_down: set[str] = set()                 # tracking URIs whose last send gave up


def unsent(run_id: str) -> list[Metric]:
    with _lock:
        return list(_unsent.get(run_id, []))


def send_metrics(mlflow_client: MlflowClient, run_id: str, points: list[Metric]) -> bool:
    """Queue `points` and send the run's queue; True if nothing is left unsent."""
    with _lock:
        _unsent.setdefault(run_id, []).extend(points)
    uri = mlflow_client.tracking_uri
    if uri in _down and not _answers(uri):
        return False
    return _send(mlflow_client, run_id)


def send_unsent(mlflow_client: MlflowClient, run_id: str) -> None:
    """Send what is queued for the run, patiently; UnsentMetrics if some points could not be sent."""
    if not unsent(run_id) or _send(mlflow_client, run_id):
        return
    left = unsent(run_id)
    steps = sorted({point.step for point in left})
    raise UnsentMetrics(f"{len(left)} metric points of MLflow run {run_id} (steps {steps[0]}..{steps[-1]}) could "
                        f"not be sent to {mlflow_client.tracking_uri} within {retry_seconds():.0f} s; the run is "
                        f"left open (not closed as complete). Bring the server back and rerun the trial "
                        f"(Tune retries it from its checkpoint), or raise {RETRY_ENV}.")


def _send(mlflow_client: MlflowClient, run_id: str) -> bool:
    uri = mlflow_client.tracking_uri
    while batch := unsent(run_id)[:METRICS_PER_CALL]:
        try:
            patiently(lambda: mlflow_client.log_batch(run_id, metrics=batch), "log metrics")
        except TrackingUnavailable as error:
            with _lock:
                _down.add(uri)
            log.warning("%s; %d metric points of run %s are kept and sent once the server answers again",
                        error, len(unsent(run_id)), run_id)
            return False
        with _lock:
            del _unsent[run_id][:len(batch)]
    with _lock:
        _unsent.pop(run_id, None)
        _down.discard(uri)
    return True


def _answers(uri: str) -> bool:
    """Whether the tracking server answers /health now; a local store (no server) always does."""
    if not uri.startswith(("http://", "https://")):
        return True
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=HEALTH_TIMEOUT_S) as response:
            return response.status == 200
    except OSError:
        return False


@atexit.register
def _say_what_was_never_sent() -> None:
    with _lock:
        left = {run_id: points for run_id, points in _unsent.items() if points}
    for run_id, points in left.items():
        steps = sorted({point.step for point in points})
        log.error("%d metric points of MLflow run %s (steps %s..%s) were never sent: the tracking server was "
                  "unreachable until this process exited", len(points), run_id, steps[0], steps[-1])
