"""The PostgreSQL that MLflow keeps a cluster's runs in: start | stop | status | uri, idempotent.

    python platform/mlflow/postgres.py start --state-dir ~/mixsweep-state      # prints the store URI
    python platform/mlflow/server.py start --backend-store-uri "$(python platform/mlflow/postgres.py uri \\
        --state-dir ~/mixsweep-state)" ...
    python platform/mlflow/postgres.py stop --state-dir ~/mixsweep-state

A PostgreSQL server of its own (Debian's `postgresql` package, or any `initdb` on PATH) in
STATE_DIR/postgres: `initdb` the first time, then `pg_ctl start`. Its data lives in the state directory,
which on the AWS head is the instance's disk mounted into the container, so the record survives the
container that `ray up` recreates and `ray down` (the head is stopped, not terminated). It listens on
127.0.0.1 only (the MLflow server on the same machine is its one client) and on a unix socket in the
state directory, with password authentication for TCP; the password is made once and kept, with the URI,
in STATE_DIR/postgres.uri (mode 0600). The URI names the database `mlflow`, which the MLflow launcher
creates once.

PostgreSQL refuses to run as root: run as root (CI, a container's root shell), the server runs as the
`postgres` user that Debian's package creates (--run-as to choose another), which must be able to
reach the state directory. Standard library only.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import pwd
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

DEFAULT_STATE_DIR = "~/.mixsweep/mlflow-server"
DEFAULT_PORT = 5433            # not 5432: the cluster Debian's package itself creates may hold that one
DATABASE = "mlflow"            # the database the URI names (the MLflow launcher creates it)
ROLE = "mlflow"                # initdb's superuser: owns that database
# Room for 4 MLflow workers x (pool + overflow) and a few psql sessions; 100 is PostgreSQL's default.
MAX_CONNECTIONS = 200
START_TIMEOUT_S = 120
EXIT_NOT_RUNNING = 3           # `status` exit code, as in server.py


class PostgresError(RuntimeError):
    """A problem the user can fix (no PostgreSQL installed, port taken); the message says how."""


def _paths(state_dir: str | os.PathLike) -> dict[str, Path]:
    root = Path(state_dir).expanduser().resolve()
    return {"root": root, "data": root / "postgres", "socket": root / "postgres-socket",
            "uri": root / "postgres.uri", "log": root / "postgres.log", "lock": root / "postgres.lock"}


@contextlib.contextmanager
def _locked(paths: dict[str, Path]):
    paths["root"].mkdir(parents=True, exist_ok=True)
    with open(paths["lock"], "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def bin_dir() -> Path | None:
    """Where initdb and pg_ctl are: on PATH, else Debian's /usr/lib/postgresql/VERSION/bin (newest)."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                    key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    return debian[-1].parent if debian else None


def _run_as(run_as: str | None) -> str | None:
    """The user the server runs as: None (this user) unless we are root."""
    if os.geteuid() != 0:
        return None
    user = run_as or "postgres"
    try:
        pwd.getpwnam(user)
    except KeyError:
        raise PostgresError(f"PostgreSQL does not run as root and there is no user {user!r}; "
                            f"install Debian's postgresql (it creates one) or pass --run-as USER.") from None
    return user


def _command(tool: str, *args: str, user: str | None) -> list[str]:
    binaries = bin_dir()
    if binaries is None:
        raise PostgresError("No PostgreSQL found (initdb on PATH or /usr/lib/postgresql/*/bin); "
                            "install it: apt-get install postgresql.")
    command = [str(binaries / tool), *args]
    return ["runuser", "-u", user, "--", *command] if user else command


def _give_to(path: Path, user: str | None) -> None:
    if user:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _pg_ctl(paths, user, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(_command("pg_ctl", "-D", str(paths["data"]), *args, user=user),
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise PostgresError(f"pg_ctl {args[0] if args else ''} failed ({result.returncode}): "
                            f"{(result.stdout + result.stderr).strip()[-1500:]}\nLog: {paths['log']}")
    return result


def _initdb(paths: dict[str, Path], user: str | None) -> str:
    """A new cluster in STATE/postgres with superuser `mlflow`; returns its password."""
    password = secrets.token_hex(16)
    paths["data"].mkdir(mode=0o700)
    _give_to(paths["data"], user)
    pwfile = paths["root"] / "initdb.pw"    # readable by the server's user alone, removed after initdb
    descriptor = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(password + "\n")
    _give_to(pwfile, user)
    try:
        result = subprocess.run(
            _command("initdb", "-D", str(paths["data"]), "-U", ROLE, f"--pwfile={pwfile}",
                     "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8",
                     "--locale=C", user=user),
            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        shutil.rmtree(paths["data"], ignore_errors=True)
        raise PostgresError(f"initdb failed ({result.returncode}): {result.stderr.strip()[-1500:]}")
    with open(paths["data"] / "postgresql.conf", "a") as conf:
        conf.write(f"\n# MixSweep (platform/mlflow/postgres.py)\nlisten_addresses = '127.0.0.1'\n"
                   f"unix_socket_directories = '{paths['socket']}'\nmax_connections = {MAX_CONNECTIONS}\n")
    return password


def _read_password(paths: dict[str, Path]) -> str | None:
    try:
        uri = paths["uri"].read_text().strip()
    except OSError:
        return None
    return uri.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]


def _write_uri(paths: dict[str, Path], password: str, port: int) -> str:
    uri = f"postgresql://{ROLE}:{password}@127.0.0.1:{port}/{DATABASE}"
    descriptor = os.open(paths["uri"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(uri + "\n")
    return uri


def running(state_dir: str | os.PathLike = DEFAULT_STATE_DIR, *, run_as: str | None = None) -> bool:
    paths = _paths(state_dir)
    if not (paths["data"] / "PG_VERSION").exists():
        return False
    return _pg_ctl(paths, _run_as(run_as), "status", check=False).returncode == 0


def start(state_dir: str | os.PathLike = DEFAULT_STATE_DIR, *, port: int = DEFAULT_PORT,
          run_as: str | None = None) -> str:
    """Start the server (initialising it the first time), or find it running; return the store URI."""
    paths = _paths(state_dir)
    user = _run_as(run_as)
    with _locked(paths):
        if user:   # the server's user must get through the state directory to its own files
            paths["root"].chmod(paths["root"].stat().st_mode | 0o011)
            if subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(paths["root"])]).returncode != 0:
                raise PostgresError(f"User {user} cannot reach {paths['root']} (a directory above it is "
                                    f"private); choose a state directory it can reach, e.g. under /tmp.")
        fresh = not (paths["data"] / "PG_VERSION").exists()
        if fresh:
            if paths["data"].exists():   # a half-made directory from an initdb that was killed
                shutil.rmtree(paths["data"])
            password = _initdb(paths, user)
        else:
            password = _read_password(paths)
            if password is None:
                raise PostgresError(f"{paths['data']} exists but {paths['uri']} (its password) is gone; "
                                    f"restore the file, or move the directory away to start afresh.")
        uri = _write_uri(paths, password, port)
        if _pg_ctl(paths, user, "status", check=False).returncode == 0:
            return uri
        paths["socket"].mkdir(exist_ok=True)
        _give_to(paths["socket"], user)
        if not paths["log"].exists():
            paths["log"].touch()
            _give_to(paths["log"], user)
        # pg_ctl puts the server in a session of its own: a closing SSH session does not end it.
        result = _pg_ctl(paths, user, "start", "-w", "-t", str(START_TIMEOUT_S), "-l", str(paths["log"]),
                         "-o", f"-p {port}", check=False)
        if result.returncode != 0:
            raise PostgresError(f"PostgreSQL did not start on 127.0.0.1:{port} (is the port taken? pass "
                                f"--port). Last lines of {paths['log']}:\n{_tail(paths['log'])}")
        return uri


def stop(state_dir: str | os.PathLike = DEFAULT_STATE_DIR, *, run_as: str | None = None) -> bool:
    """Stop the server (fast shutdown: open sessions are ended); False if none was running."""
    paths = _paths(state_dir)
    user = _run_as(run_as)
    with _locked(paths):
        if not (paths["data"] / "PG_VERSION").exists():
            return False
        if _pg_ctl(paths, user, "status", check=False).returncode != 0:
            return False
        _pg_ctl(paths, user, "stop", "-m", "fast", "-w", "-t", "60")
        return True


def uri(state_dir: str | os.PathLike = DEFAULT_STATE_DIR) -> str | None:
    try:
        return _paths(state_dir)["uri"].read_text().strip() or None
    except OSError:
        return None


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop", "status", "uri"])
    parser.add_argument("--state-dir", default=DEFAULT_STATE_DIR,
                        help=f"data directory, socket, URI and log (default {DEFAULT_STATE_DIR})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port on 127.0.0.1")
    parser.add_argument("--run-as", help="the user the server runs as when this runs as root (default postgres)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.action == "start":
            print(start(args.state_dir, port=args.port, run_as=args.run_as))
        elif args.action == "stop":
            print("PostgreSQL stopped" if stop(args.state_dir, run_as=args.run_as) else "PostgreSQL not running")
        elif args.action == "status":
            if not running(args.state_dir, run_as=args.run_as):
                print("PostgreSQL not running")
                return EXIT_NOT_RUNNING
            print("PostgreSQL running")
        else:
            found = uri(args.state_dir)
            if found is None:
                print(f"error: no PostgreSQL was started from {args.state_dir}; run `start` first",
                      file=sys.stderr)
                return 1
            print(found)
    except PostgresError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
