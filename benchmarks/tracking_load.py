"""What the tracking server holds: N simulated trials logging at once to a real MLflow server on 127.0.0.1.

    python benchmarks/tracking_load.py                                  # SQLite and PostgreSQL, N = 8, 32, 128
    python benchmarks/tracking_load.py --backends postgresql --trials 128 --epochs 20

One cell = one backend and one N: a fresh store (a new SQLite file, or a new database on a private
PostgreSQL started by platform/mlflow/postgres.py), a server started by platform/mlflow/server.py with
`--trials N` (so sized as the cluster head sizes it), then N trials at once, each through
trainables/records.py as a real trial is: open its child run (with 15 params) under one parent run,
then per epoch a pause (the training) and 15 metrics, then a 1 MB artifact, then close the run FINISHED.
The trials are threads spread over --clients processes (each process has its own HTTP connections,
as Ray's trial processes do).

Reported per cell: requests/s (HTTP requests the trials sent, retries included, over the load's wall time),
p50/p99 latency of a records call (retries included), failed calls (records calls that raised), runs
not FINISHED and lost metric points, both counted in the store itself with SQL (what was sent minus the
distinct points the store holds). Written to benchmarks/results/tracking_load.json and .md with the
hardware, versions and load average; `--epochs`/`--epoch-seconds` bound each cell's time.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import json
import multiprocessing
import os
import platform as stdlib_platform
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
METRICS_PER_EPOCH = 15
PARAMS = 15


def load_platform_module(name: str):
    """platform/mlflow/NAME.py, by path (platform/ is never a package: it would shadow the stdlib's)."""
    spec = importlib.util.spec_from_file_location(f"mixsweep_mlflow_{name}", ROOT / "platform" / "mlflow" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---- one simulated trial -------------------------------------------------------------------------------

def simulated_trial(url: str, experiment_id: str, parent_run_id: str, index: int, *, epochs: int,
                    epoch_seconds: float, artifact_dir: str, calls: list) -> None:
    """One trial's tracking, as trainables/mixunlearn_trial.py does it; each records call timed into
    `calls` as (what, seconds, error or None)."""
    from trainables import records

    client = records.client(url)

    def timed(what, call):
        started = time.perf_counter()
        try:
            result = call()
        except Exception as error:   # noqa: BLE001 - a failed call is what this counts
            calls.append((what, time.perf_counter() - started, f"{type(error).__name__}: {str(error)[:300]}"))
            raise
        calls.append((what, time.perf_counter() - started, None))
        return result

    try:
        params = {f"param_{k}": k * 0.1 + index for k in range(PARAMS)}
        run_id = timed("open", lambda: records.open_child_run(
            client, experiment_id=experiment_id, parent_run_id=parent_run_id, trial_id=f"trial_{index:04d}",
            run_name=f"trial_{index:04d}", params=params))
        for epoch in range(1, epochs + 1):
            time.sleep(epoch_seconds)
            metrics = {"epoch": epoch, **{f"metric_{k}": index + epoch / (k + 1) for k in range(METRICS_PER_EPOCH - 1)}}
            timed("log_metrics", lambda: records.log_metrics(client, run_id, metrics, step=epoch))
        timed("artifact", lambda: records.log_files(client, run_id, artifact_dir))
        timed("close", lambda: records.close_run(client, run_id, "FINISHED"))
    except Exception:   # noqa: BLE001 - recorded above; the trial stops here as a real one would
        pass


def client_process(url: str, experiment_id: str, parent_run_id: str, indices: list[int], epochs: int,
                   epoch_seconds: float, artifact_dir: str) -> tuple[list, int]:
    """The trials `indices`, one thread each, in this process; returns every call's (what, s, error) and
    the HTTP requests sent (counted where MLflow's client sends them: requests.Session.send)."""
    import itertools

    import requests

    sent = itertools.count()
    send = requests.Session.send

    def counted_send(self, request, **kwargs):
        next(sent)
        return send(self, request, **kwargs)

    requests.Session.send = counted_send
    calls: list = []
    threads = [threading.Thread(target=simulated_trial, args=(url, experiment_id, parent_run_id, i),
                                kwargs={"epochs": epochs, "epoch_seconds": epoch_seconds,
                                        "artifact_dir": artifact_dir, "calls": calls}) for i in indices]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        requests.Session.send = send
    return calls, next(sent)


# ---- counting in the store ------------------------------------------------------------------------------

def count_in_store(store_uri: str, parent_run_id: str) -> dict:
    """The trials' runs under the parent and their metric points, read from the store with SQL."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(store_uri, poolclass=sqlalchemy.pool.NullPool)
    children = ("SELECT r.run_uuid, r.status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                "WHERE t.key = 'mlflow.parentRunId' AND t.value = :parent AND r.lifecycle_stage = 'active'")
    with engine.connect() as connection:
        runs = connection.execute(sqlalchemy.text(children), {"parent": parent_run_id}).all()
        points = connection.execute(sqlalchemy.text(
            f"SELECT COUNT(*) FROM (SELECT DISTINCT m.run_uuid, m.key, m.step FROM metrics m "
            f"WHERE m.run_uuid IN (SELECT run_uuid FROM ({children}) c)) d"), {"parent": parent_run_id}).scalar()
    engine.dispose()
    return {"runs": len(runs), "finished": sum(status == "FINISHED" for _, status in runs), "points": int(points)}


# ---- one cell --------------------------------------------------------------------------------------------

def run_load(url: str, store_uri: str, trials: int, *, epochs: int, epoch_seconds: float,
             clients: int, artifact_mb: float, work_dir: Path) -> dict:
    """N trials against a running server; the figures of one cell."""
    from trainables import records

    artifact_dir = work_dir / "artifact"
    artifact_dir.mkdir(exist_ok=True)
    (artifact_dir / "weights.bin").write_bytes(os.urandom(int(artifact_mb * 1024 * 1024)))
    client = records.client(url)
    experiment_id = client.create_experiment(f"load-{trials}-{time.time_ns()}")
    parent_run_id = records.open_run(client, experiment_id=experiment_id, run_name="load", kind="sweep", params={})
    groups = [list(range(trials))[k::max(1, clients)] for k in range(min(max(1, clients), trials))]
    load_before = os.getloadavg()
    started = time.perf_counter()
    if clients == 0:   # every trial a thread of this process (a test process may hold threads: no fork)
        done = [client_process(url, experiment_id, parent_run_id, groups[0], epochs, epoch_seconds, str(artifact_dir))]
    else:
        # fork: the children inherit the imported MLflow and start at once; no threads exist yet here.
        with concurrent.futures.ProcessPoolExecutor(len(groups), mp_context=multiprocessing.get_context("fork")) as pool:
            futures = [pool.submit(client_process, url, experiment_id, parent_run_id, group, epochs, epoch_seconds,
                                   str(artifact_dir)) for group in groups]
            done = [future.result() for future in futures]
    wall = time.perf_counter() - started
    load_after = os.getloadavg()
    calls = [call for group_calls, _ in done for call in group_calls]
    answered = sum(sent for _, sent in done)
    stored = count_in_store(store_uri, parent_run_id)
    latencies = sorted(seconds for _, seconds, _ in calls)
    errors = [error for _, _, error in calls if error]
    sent_points = trials * epochs * METRICS_PER_EPOCH
    return {
        "trials": trials, "epochs": epochs, "epoch_seconds": epoch_seconds, "wall_s": round(wall, 1),
        "requests": answered, "requests_per_s": round(answered / wall, 1), "records_calls": len(calls),
        "p50_s": round(statistics.median(latencies), 3) if latencies else None,
        "p99_s": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 3) if latencies else None,
        "failed_calls": len(errors), "first_errors": sorted(set(errors))[:3],
        "runs_created": stored["runs"], "runs_not_finished": trials - stored["finished"],
        "points_sent": sent_points, "points_stored": stored["points"], "lost_points": sent_points - stored["points"],
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in load_after],
    }


def run_cell(backend: str, trials: int, args, launcher, postgres_uri: str | None, work: Path) -> dict:
    cell_dir = work / f"{backend}-{trials}"
    cell_dir.mkdir()
    if backend == "sqlite":
        store_uri = f"sqlite:///{cell_dir / 'mlflow.db'}"
    else:
        store_uri = postgres_uri.rsplit("/", 1)[0] + f"/load_{trials}_{time.time_ns()}"
    server = launcher.start(cell_dir / "server", hosts=args.hosts, port=free_port(), backend_store_uri=store_uri,
                            trials=trials, workers=args.workers)
    try:
        result = run_load(server["url"], store_uri, trials, epochs=args.epochs,
                          epoch_seconds=args.epoch_seconds, clients=args.clients, artifact_mb=args.artifact_mb,
                          work_dir=cell_dir)
    finally:
        launcher.stop(cell_dir / "server")
    return {"backend": backend, "server": {"hosts": args.hosts, "http": "gunicorn" if len(args.hosts) > 1 else "uvicorn",
                                           **{k: server[k] for k in ("workers", "threads", "pool_size", "max_overflow")}},
            **result}


# ---- the report ------------------------------------------------------------------------------------------

def environment() -> dict:
    import mlflow
    import sqlalchemy

    postgres = load_platform_module("postgres")
    binaries = postgres.bin_dir()
    pg_version = ""
    if binaries:
        import subprocess
        pg_version = subprocess.run([str(binaries / "postgres"), "--version"], capture_output=True, text=True).stdout.strip()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), stdlib_platform.processor())
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(memory_gb, 1), "gpu": None,
            "python": sys.version.split()[0], "mlflow": mlflow.__version__, "sqlalchemy": sqlalchemy.__version__,
            "postgresql": pg_version, "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [
        "# Tracking-server load (benchmarks/tracking_load.py)", "",
        f"{env['cpu']}, {env['cores']} cores, {env['memory_gb']} GB, no GPU; Python {env['python']}, MLflow "
        f"{env['mlflow']}, SQLAlchemy {env['sqlalchemy']}, {env['postgresql']}; {env['date_utc']} UTC. "
        f"One run per cell. The machine was shared with other work: load averages (1/5/15 min) are per cell.", "",
        f"Each trial: open its run (15 params), {report['settings']['epochs']} epochs of "
        f"{report['settings']['epoch_seconds']} s with {METRICS_PER_EPOCH} metrics each, a "
        f"{report['settings']['artifact_mb']} MB artifact, close FINISHED; trials as threads over "
        f"{report['settings']['clients']} client processes; server sized by `server.py --trials N`.", "",
        "| backend | N | server | workers | threads | pool | requests/s | p50 s | p99 s | failed calls | runs not FINISHED | "
        "lost points | wall s | load avg before → after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cell in report["cells"]:
        server = cell["server"]
        lines.append(f"| {cell['backend']} | {cell['trials']} | {server.get('http', 'uvicorn')} | {server['workers']} | "
                     f"{server['threads']} | {server['pool_size']}+"
                     f"{server['max_overflow']} | {cell['requests_per_s']} | {cell['p50_s']} | {cell['p99_s']} | "
                     f"{cell['failed_calls']} | {cell['runs_not_finished']} | {cell['lost_points']} | {cell['wall_s']} | "
                     f"{'/'.join(map(str, cell['loadavg_before']))} → {'/'.join(map(str, cell['loadavg_after']))} |")
    errors = sorted({e for cell in report["cells"] for e in cell["first_errors"]})
    if errors:
        lines += ["", "First errors:", *[f"- `{e}`" for e in errors]]
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument("--trials", nargs="+", type=int, default=[8, 32, 128], help="N: trials at once")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--epoch-seconds", type=float, default=1.0, help="the simulated training time of an epoch")
    parser.add_argument("--artifact-mb", type=float, default=1.0)
    parser.add_argument("--clients", type=int, default=4,
                        help="client processes the trials are spread over (0: threads of this process)")
    parser.add_argument("--hosts", nargs="+", default=["127.0.0.1"],
                        help="listening addresses; two (e.g. 127.0.0.1 127.0.0.2) run gunicorn, as the cluster head does")
    parser.add_argument("--workers", type=int, help="server workers (default: as `server.py --trials N` sizes them)")
    parser.add_argument("--out", default=str(RESULTS / "tracking_load"), help="OUT.json and OUT.md")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    sys.path.insert(0, str(ROOT))
    launcher = load_platform_module("server")
    postgres = load_platform_module("postgres")
    work = Path(tempfile.mkdtemp(prefix="mxs-load-", dir="/tmp"))
    work.chmod(0o711)   # a private PostgreSQL run as `postgres` (when this runs as root) must get in
    postgres_uri = None
    try:
        if "postgresql" in args.backends:
            postgres_uri = postgres.start(work / "pg", port=free_port())
        cells = []
        for backend in args.backends:
            for trials in args.trials:
                cell = run_cell(backend, trials, args, launcher, postgres_uri, work)
                print(json.dumps(cell), flush=True)
                cells.append(cell)
    finally:
        if postgres_uri:
            postgres.stop(work / "pg")
        shutil.rmtree(work, ignore_errors=True)
    report = {"environment": environment(), "settings": {k: getattr(args, k) for k in
                                                         ("epochs", "epoch_seconds", "artifact_mb", "clients", "hosts",
                                                          "workers")},
              "cells": cells}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
