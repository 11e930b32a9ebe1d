"""The MLflow tracking server of a MixSweep cluster: start | stop | status, idempotent.

    python platform/mlflow/server.py start --host 10.0.1.5 --host 127.0.0.1 \\
        --backend-store-uri sqlite:////home/ray/mixsweep-state/mlflow.db \\
        --artifacts-destination s3://my-bucket/mixsweep/mlflow-artifacts \\
        --state-dir ~/mixsweep-state
    python platform/mlflow/server.py status --state-dir ~/mixsweep-state   # exit 0 running, 3 not
    python platform/mlflow/server.py stop --state-dir ~/mixsweep-state

- `start` returns once the server answers /health; if one is already running from the same state
  directory it says so and exits 0. It writes `mlflow.pid` and `mlflow.url` (http://FIRST_HOST:PORT,
  the address to give clients) and appends the server's output to `server.log` in the state directory.
- `stop` ends the process group `start` created, and only that; with nothing running it exits 0.
- `--host` may be given more than once: the first address is the one clients use (on a cluster head,
  its private address, which the workers reach), the others are extra listening addresses (127.0.0.1,
  which `ray attach cluster.yaml -p 5000` forwards to). uvicorn binds one address, so with several
  the server runs under gunicorn, which MLflow also ships; the tracking API and UI are the same.
- The store is made ready before the workers start, so they never race to create tables: a fresh
  SQLite file gets `mlflow db upgrade`; a `postgresql://` store gets its database created if the server
  has none of that name yet (connecting to the `postgres` database with the URI's user), then
  `mlflow db upgrade` on every start (a no-op when the schema is current; it migrates after an MLflow
  upgrade). The URI goes to the server in its environment, not its command line, which any user of
  the machine can read with `ps`.
- `--trials N` (default 8): the concurrent trials the server must serve. It sets the workers (one for
  SQLite, which takes one writer at a time; one per TRIALS_PER_WORKER trials for PostgreSQL, at most
  one per CPU) and each worker's SQLAlchemy pool (MLFLOW_SQLALCHEMYSTORE_POOL_SIZE / _MAX_OVERFLOW):
  as many connections as the worker has request threads, so no request waits for a connection
  (SQLAlchemy gives up after 30 s: "QueuePool limit ... reached"). `--workers` overrides the count.
  The figures behind these numbers: benchmarks/results/tracking_load.md.

Standard library and the `mlflow` CLI only, so it runs before anything else is imported; for a
`postgresql://` store also SQLAlchemy (MLflow's own dependency) and the driver, psycopg.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

# ---- defaults for a small head node ----------------------------------------------------------
DEFAULT_STATE_DIR = "~/.mixsweep/mlflow-server"
DEFAULT_PORT = 5000
DEFAULT_TRIALS = 8           # concurrent trials to serve: one GPU's worth (paper space: 8 per GPU)
# PostgreSQL: one ~0.5 GB worker per this many trials. At 128 trials on 2 cores one worker served 79
# requests/s (p99 6.3 s), two 71 (p99 9.4 s), both losing nothing: benchmarks/results/tracking_load.md.
TRIALS_PER_WORKER = 128
UVICORN_THREADS = 40         # requests one uvicorn worker runs at once (anyio's thread limiter)
MIN_GUNICORN_THREADS = 8     # several listening addresses: gunicorn workers, threaded
POOL_OVERFLOW = 4            # connections beyond the pool, for the server's own background work
START_TIMEOUT_S = 180.0      # a fresh SQLite store runs ~100 migrations first (10-20 s on 2 cores)
STOP_TIMEOUT_S = 20.0        # SIGTERM, then SIGKILL for whatever of the group is left
EXIT_NOT_RUNNING = 3         # `status` exit code, as LSB init scripts use


class LauncherError(RuntimeError):
    """A problem the user can fix (port taken, server failed to start); the message says how."""


# ---- state files -----------------------------------------------------------------------------
def _paths(state_dir: str | os.PathLike) -> dict[str, Path]:
    root = Path(state_dir).expanduser().resolve()
    return {"root": root, "pid": root / "mlflow.pid", "url": root / "mlflow.url",
            "log": root / "server.log", "lock": root / "lock"}


@contextlib.contextmanager
def _locked(paths: dict[str, Path]):
    """One start/stop at a time per state directory (two `ray up` runs, a test and its fixture)."""
    paths["root"].mkdir(parents=True, exist_ok=True)
    with open(paths["lock"], "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) of a process from /proc, or None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the parenthesised command name: state, ppid, pgrp, ...
    state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
    return state, int(pgrp)


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group `pgid`."""
    pids = (int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return [pid for pid in pids if (stat := _proc_stat(pid)) and stat[1] == pgid and stat[0] != "Z"]


def _our_server_pid(paths: dict[str, Path]) -> int | None:
    """The pid in the pid file if it is still the MLflow server `start` created: a live process
    group leader running mlflow in the state directory. Anything else (the pid reused by another
    program, a leftover file) makes the pid file stale, and nothing is signalled."""
    try:
        pid = int(paths["pid"].read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except (OSError, ValueError):
        return None
    stat = _proc_stat(pid)
    if stat is None or stat[0] == "Z" or stat[1] != pid:
        return None
    return pid if b"mlflow" in cmdline and cwd == paths["root"] else None


def _healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


# ---- status ----------------------------------------------------------------------------------
def status(state_dir: str | os.PathLike = DEFAULT_STATE_DIR) -> dict | None:
    """{"pid", "url", "healthy"} of the server started from `state_dir`, or None if none runs."""
    paths = _paths(state_dir)
    pid = _our_server_pid(paths)
    if pid is None:
        return None
    try:
        url = paths["url"].read_text().strip()
    except OSError:
        url = ""
    return {"pid": pid, "url": url, "healthy": bool(url) and _healthy(url)}


# ---- start -----------------------------------------------------------------------------------
def _port_is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _url(host: str, port: int) -> str:
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _default_allowed_hosts(hosts: list[str], port: int) -> str:
    """Host headers the server accepts (DNS-rebinding protection): its own addresses, and
    localhost on any port, which is where an SSH or kubectl port-forward lands."""
    own = [f"{host},{host}:{port}" for host in hosts if host not in ("localhost", "127.0.0.1")]
    return ",".join([*own, "localhost,localhost:*,127.0.0.1,127.0.0.1:*"])


def _gunicorn_opts(extra_hosts: list[str], port: int, threads: int) -> str:
    binds = " ".join(f"-b [{host}]:{port}" if ":" in host else f"-b {host}:{port}"
                     for host in extra_hosts)
    opts = f"{binds} --threads {threads} --timeout 300"
    # Recent gunicorn opens a control socket in ~/.gunicorn, shared by every instance: not wanted.
    probe = subprocess.run([sys.executable, "-m", "gunicorn", "--help"], capture_output=True, text=True)
    if "--no-control-socket" in probe.stdout:
        opts += " --no-control-socket"
    return opts


def _absolute(location: str) -> str:
    """A local path or sqlite:/// URI made absolute here, where the user typed it (the server
    itself runs in the state directory); other URIs (s3://, postgresql://) unchanged."""
    if location.startswith("sqlite:///"):
        path, query = location.removeprefix("sqlite:///").partition("?")[::2]
        return f"sqlite:///{Path(path).expanduser().resolve()}" + (f"?{query}" if query else "")
    if "://" in location:
        return location
    return str(Path(location).expanduser().resolve())


def sizing(trials: int, backend_store_uri: str, *, several_hosts: bool, workers: int | None = None) -> dict:
    """Workers, request threads per worker and SQLAlchemy pool for `trials` concurrent trials."""
    if trials < 1:
        raise LauncherError(f"--trials {trials}: give the number of trials that run at once (1 or more).")
    if workers is None:
        workers = 1 if backend_store_uri.startswith("sqlite:") else \
            max(1, min(math.ceil(trials / TRIALS_PER_WORKER), os.cpu_count() or 1))
    # Each trial has at most one call in flight; the driver adds a few.
    threads = max(MIN_GUNICORN_THREADS, min(UVICORN_THREADS, math.ceil(trials / workers) + 2)) \
        if several_hosts else UVICORN_THREADS
    return {"workers": workers, "threads": threads, "pool_size": threads, "max_overflow": POOL_OVERFLOW}


def _shown(uri: str) -> str:
    """The URI with its password hidden, for messages and logs."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _mlflow_db_upgrade(uri: str, env: dict, log) -> None:
    # `mlflow db upgrade URI`, with the URI (and its password) in the environment, not on a command line.
    upgrade = ("import os; from mlflow.cli import cli; "
               "cli.main(['db', 'upgrade', os.environ['MLFLOW_BACKEND_STORE_URI']], prog_name='mlflow')")
    result = subprocess.run([sys.executable, "-c", upgrade], env={**env, "MLFLOW_BACKEND_STORE_URI": uri},
                            stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise LauncherError(f"`mlflow db upgrade {_shown(uri)}` failed (exit {result.returncode}); "
                            f"see {log.name} for its output.")


def _create_sqlite_store_once(uri: str, env: dict, log) -> None:
    db_file = Path(uri.removeprefix("sqlite:///").partition("?")[0])
    if db_file.exists():
        return
    db_file.parent.mkdir(parents=True, exist_ok=True)
    _mlflow_db_upgrade(uri, env, log)


def create_postgres_database_once(uri: str) -> bool:
    """Create the database the URI names unless the server has it; True if it was created now."""
    try:
        import sqlalchemy
        from sqlalchemy.engine import make_url
        engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool)
    except ImportError as error:
        raise LauncherError(f"A postgresql:// store needs the PostgreSQL driver ({error}); "
                            f"pip install 'psycopg[binary]' (the project's dependencies include it).") from None
    name = make_url(uri).database
    if not name:
        raise LauncherError(f"{_shown(uri)}: name the database at the end, e.g. postgresql://user:pw@host:5432/mlflow")
    try:
        with engine.connect():
            return False                       # it exists, and this user may use it
    except sqlalchemy.exc.OperationalError as error:
        if f'database "{name}" does not exist' not in str(error):
            raise LauncherError(f"Cannot connect to {_shown(uri)}: {str(error).splitlines()[0]}. "
                                f"Is PostgreSQL running there (platform/mlflow/postgres.py start)?") from None
    finally:
        engine.dispose()
    server = sqlalchemy.create_engine(make_url(uri).set(database="postgres"), poolclass=sqlalchemy.pool.NullPool,
                                      isolation_level="AUTOCOMMIT")   # CREATE DATABASE refuses a transaction
    try:
        with server.connect() as connection:
            quoted = server.dialect.identifier_preparer.quote(name)
            connection.execute(sqlalchemy.text(f"CREATE DATABASE {quoted}"))
    except sqlalchemy.exc.ProgrammingError as error:
        if "already exists" in str(error):     # another head's launcher made it a moment ago
            return False
        raise LauncherError(f"Cannot create database {name!r} on {_shown(uri)}: {str(error).splitlines()[0]}; "
                            f"create it yourself (createdb {name}) or use a user allowed to.") from None
    except sqlalchemy.exc.OperationalError as error:
        raise LauncherError(f"Database {name!r} does not exist on {_shown(uri)} and the server's `postgres` "
                            f"database cannot be reached to create it ({str(error).splitlines()[0]}); "
                            f"create it yourself (createdb {name}).") from None
    finally:
        server.dispose()
    return True


def _prepare_store(uri: str, env: dict, log) -> None:
    """Tables made (or migrated) before any worker starts, so workers never race to make them."""
    if uri.startswith("sqlite:///"):
        _create_sqlite_store_once(uri, env, log)
    elif uri.startswith(("postgresql://", "postgresql+")):
        create_postgres_database_once(uri)
        _mlflow_db_upgrade(uri, env, log)


def _server_command(hosts, port, artifacts_destination, size) -> list[str]:
    command = [sys.executable, "-m", "mlflow", "server",
               "--host", hosts[0], "--port", str(port), "--workers", str(size["workers"]),
               "--serve-artifacts", "--artifacts-destination", artifacts_destination]
    if len(hosts) > 1:
        command += ["--gunicorn-opts", _gunicorn_opts(hosts[1:], port, size["threads"])]
    return command


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start(state_dir: str | os.PathLike = DEFAULT_STATE_DIR, *, hosts: list[str] | None = None,
          port: int = DEFAULT_PORT, backend_store_uri: str | None = None,
          artifacts_destination: str | None = None, trials: int = DEFAULT_TRIALS, workers: int | None = None,
          allowed_hosts: str | None = None, timeout: float = START_TIMEOUT_S) -> dict:
    """Start the server (or find it running) and return {"pid", "url", "started"}.

    hosts: listening addresses, the first is the URL clients use (default ["127.0.0.1"]).
    backend_store_uri: SQLAlchemy URI (sqlite:///..., postgresql://...); default sqlite:///STATE_DIR/mlflow.db.
    trials: concurrent trials to serve, which size the workers and pools; workers: overrides the count.
    artifacts_destination: where proxied artifacts land (s3://..., a path); default STATE_DIR/artifacts.
    allowed_hosts: comma-separated Host headers to accept; default the hosts and localhost.
    """
    paths = _paths(state_dir)
    hosts = list(hosts or ["127.0.0.1"])
    with _locked(paths):
        running = status(state_dir)
        if running is not None:
            return {**running, "started": False}
        for stale in (paths["pid"], paths["url"]):
            stale.unlink(missing_ok=True)
        for host in hosts:
            if not _port_is_free(host, port):
                raise LauncherError(f"Port {port} on {host} is already in use by another process; "
                                    f"stop it or pass --port.")
        backend_store_uri = _absolute(backend_store_uri or f"sqlite:///{paths['root'] / 'mlflow.db'}")
        artifacts_destination = _absolute(artifacts_destination or str(paths["root"] / "artifacts"))
        # Job execution (a task queue MLflow's GenAI features use) costs ~2.5 GB; trials don't need it.
        env = {**os.environ}
        env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        size = sizing(trials, backend_store_uri, several_hosts=len(hosts) > 1, workers=workers)
        # MLflow's own variables, when the caller sets them, win (a pool tuned by hand, a benchmark).
        size["pool_size"] = int(env.setdefault("MLFLOW_SQLALCHEMYSTORE_POOL_SIZE", str(size["pool_size"])))
        size["max_overflow"] = int(env.setdefault("MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW", str(size["max_overflow"])))
        env["MLFLOW_BACKEND_STORE_URI"] = backend_store_uri
        # The environment form of --allowed-hosts: the CLI refuses the flag under gunicorn,
        # while both servers' security middleware read the variable.
        env["MLFLOW_SERVER_ALLOWED_HOSTS"] = allowed_hosts or _default_allowed_hosts(hosts, port)
        with open(paths["log"], "ab") as log:
            log.write(f"mixsweep launcher: store {_shown(backend_store_uri)}, {size}\n".encode())
            log.flush()
            _prepare_store(backend_store_uri, env, log)
            command = _server_command(hosts, port, artifacts_destination, size)
            # A session of its own: `stop` can end the whole group, and a closing SSH session
            # (`ray up` runs this over SSH) does not hang it up.
            server = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True,
                                      cwd=paths["root"])
        url = _url(hosts[0], port)
        paths["url"].write_text(f"{url}\n")
        paths["pid"].write_text(f"{server.pid}\n")
        deadline = time.monotonic() + timeout
        while not _healthy(url):
            if server.poll() is not None or time.monotonic() > deadline:
                _stop_group(server.pid, STOP_TIMEOUT_S)
                for path in (paths["pid"], paths["url"]):
                    path.unlink(missing_ok=True)
                why = (f"exited with code {server.returncode}" if server.returncode is not None
                       else f"did not answer {url}/health within {timeout:.0f} s")
                raise LauncherError(f"The MLflow server {why}. Last lines of {paths['log']}:\n"
                                    f"{_tail(paths['log'])}")
            time.sleep(0.5)
        return {"pid": server.pid, "url": url, "healthy": True, "started": True, **size}


# ---- stop ------------------------------------------------------------------------------------
def _stop_group(pgid: int, timeout: float) -> None:
    """SIGTERM the group, SIGKILL what is left after `timeout`, and wait until none of it lives."""
    for sig, wait_s in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            # Reap the leader if it is our child (library use); orphans are reaped by init.
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pgid, os.WNOHANG)
            if not _group_members(pgid):
                return
            time.sleep(0.2)
    raise LauncherError(f"Processes {_group_members(pgid)} of group {pgid} survived SIGKILL.")


def _wait_until_port_is_free(url: str, timeout: float) -> None:
    """The group is gone, but the kernel may close its listening socket a moment later: `stop` returns
    once the port can be bound again, so a `start` right after it does not find the port taken."""
    host_port = urllib.parse.urlsplit(url) if url else None
    if host_port is None or host_port.port is None:
        return
    deadline = time.monotonic() + timeout
    while not _port_is_free(host_port.hostname, host_port.port) and time.monotonic() < deadline:
        time.sleep(0.2)


def stop(state_dir: str | os.PathLike = DEFAULT_STATE_DIR, *, timeout: float = STOP_TIMEOUT_S) -> int | None:
    """Stop the server started from `state_dir`; return its pid, or None if none was running."""
    paths = _paths(state_dir)
    with _locked(paths):
        pid = _our_server_pid(paths)
        if pid is not None:
            url = paths["url"].read_text().strip() if paths["url"].exists() else ""
            _stop_group(pid, timeout)
            _wait_until_port_is_free(url, timeout)
        for path in (paths["pid"], paths["url"]):
            path.unlink(missing_ok=True)
        return pid


# ---- command line ----------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--state-dir", default=DEFAULT_STATE_DIR,
                        help=f"pid, URL, log and lock files (default {DEFAULT_STATE_DIR})")
    parser.add_argument("--host", action="append", dest="hosts",
                        help="listening address; repeat for more; the first is the URL (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--backend-store-uri", help="default sqlite:///STATE_DIR/mlflow.db")
    parser.add_argument("--artifacts-destination", help="default STATE_DIR/artifacts")
    parser.add_argument("--trials", type=int, default=DEFAULT_TRIALS,
                        help=f"concurrent trials to serve: sizes workers and pools (default {DEFAULT_TRIALS})")
    parser.add_argument("--workers", type=int, help="server worker processes (default: from --trials)")
    parser.add_argument("--allowed-hosts", help="comma-separated Host headers (default: the hosts, localhost)")
    parser.add_argument("--timeout", type=float, default=START_TIMEOUT_S,
                        help="seconds `start` waits for /health")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.action == "start":
            server = start(args.state_dir, hosts=args.hosts, port=args.port,
                           backend_store_uri=args.backend_store_uri,
                           artifacts_destination=args.artifacts_destination, trials=args.trials,
                           workers=args.workers,
                           allowed_hosts=args.allowed_hosts, timeout=args.timeout)
            verb = "started" if server["started"] else "already running"
            size = f", {server['workers']} workers" if server["started"] else ""
            print(f"MLflow server {verb} at {server['url']} (pid {server['pid']}{size})")
        elif args.action == "stop":
            pid = stop(args.state_dir)
            print(f"MLflow server (pid {pid}) stopped" if pid else "MLflow server not running")
        else:
            server = status(args.state_dir)
            if server is None:
                print("MLflow server not running")
                return EXIT_NOT_RUNNING
            health = "healthy" if server["healthy"] else "not answering /health"
            print(f"MLflow server running at {server['url']} (pid {server['pid']}, {health})")
    except LauncherError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
