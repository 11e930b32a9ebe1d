"""The MLflow launcher the cluster head runs: a real server, a real client over HTTP, real processes."""
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

LAUNCHER = Path(__file__).resolve().parents[2] / "platform" / "mlflow" / "server.py"
# platform/mlflow/postgres.py's max_connections, and the kuberay StatefulSet's
POSTGRES_MAX_CONNECTIONS = 200


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launcher_cli(*args):
    result = subprocess.run([sys.executable, str(LAUNCHER), *args], capture_output=True, text=True,
                            timeout=300)
    return result.returncode, result.stdout + result.stderr


def group_of(pgid):
    """(pid, state) of every process in group `pgid`, read from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:
            members.append((int(entry.name), fields[0]))
    return members


def listening(host, port):
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex((host, port)) == 0


def test_start_is_idempotent_serves_two_addresses_proxies_artifacts_and_stop_ends_its_group(tmp_path):
    state, artifacts = tmp_path / "state", tmp_path / "artifacts"
    port = free_port()
    hosts = ["127.0.0.1", "127.0.0.2"]   # the head's private address and the SSH tunnel's end
    start_args = ["start", "--host", hosts[0], "--host", hosts[1], "--port", str(port),
                  "--backend-store-uri", f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}",
                  "--artifacts-destination", str(artifacts), "--state-dir", str(state)]

    code, out = launcher_cli(*start_args)
    assert code == 0, out
    url = f"http://127.0.0.1:{port}"
    assert f"started at {url}" in out
    pid = int((state / "mlflow.pid").read_text())
    assert (state / "mlflow.url").read_text().strip() == url
    try:
        assert all(listening(host, port) for host in hosts)

        # A run with an artifact, through the server: the file lands in the artifacts destination.
        client = MlflowClient(tracking_uri=url)
        run = client.create_run(client.create_experiment("launcher-test"))
        client.log_param(run.info.run_id, "alpha", "0.5")
        client.log_metric(run.info.run_id, "avg_gap", 0.25)
        note = tmp_path / "note.txt"
        note.write_text("forget set gone")
        client.log_artifact(run.info.run_id, str(note))
        back = client.download_artifacts(run.info.run_id, "note.txt", str(tmp_path))
        assert Path(back).read_text() == "forget set gone"
        assert [p.read_text() for p in artifacts.rglob("note.txt")] == ["forget set gone"]
        assert client.get_run(run.info.run_id).data.metrics == {"avg_gap": 0.25}

        code, out = launcher_cli(*start_args)
        assert code == 0 and f"already running at {url} (pid {pid})" in out, out
        code, out = launcher_cli("status", "--state-dir", str(state))
        assert code == 0 and f"running at {url} (pid {pid}, healthy)" in out, out
        members = group_of(pid)
        assert len(members) >= 2, members   # the mlflow CLI and its gunicorn processes
    finally:
        code, out = launcher_cli("stop", "--state-dir", str(state))
    assert code == 0 and f"(pid {pid}) stopped" in out, out

    # Every process of the group is dead (a zombie waits only for init to collect its status).
    alive = [(p, s) for p, s in group_of(pid) if s != "Z"]
    assert alive == []
    assert not any(listening(host, port) for host in hosts)
    assert not (state / "mlflow.pid").exists() and not (state / "mlflow.url").exists()

    code, out = launcher_cli("stop", "--state-dir", str(state))
    assert code == 0 and "not running" in out, out
    code, out = launcher_cli("status", "--state-dir", str(state))
    assert code == 3 and "not running" in out, out


def test_stop_never_signals_a_process_that_merely_took_the_pid(mlflow_launcher, tmp_path):
    # Worst case of pid reuse: another group leader whose command line even says mlflow.
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)  # mlflow"],
                             start_new_session=True, cwd=tmp_path)
    try:
        state = tmp_path / "state"
        state.mkdir()
        (state / "mlflow.pid").write_text(f"{other.pid}\n")
        (state / "mlflow.url").write_text("http://127.0.0.1:1\n")
        assert mlflow_launcher.status(state) is None
        assert mlflow_launcher.stop(state) is None
        time.sleep(0.5)
        assert other.poll() is None
        assert not (state / "mlflow.pid").exists()
    finally:
        other.kill()
        other.wait()


def test_start_refuses_a_taken_port_naming_it(mlflow_launcher, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(mlflow_launcher.LauncherError, match=f"Port {port} on 127.0.0.1 .*--port"):
            mlflow_launcher.start(tmp_path / "state", port=port)
    assert not (tmp_path / "state" / "mlflow.pid").exists()
    assert not (tmp_path / "state" / "mlflow.db").exists()


def test_session_server_fixture_records_runs(mlflow_server):
    client = MlflowClient(tracking_uri=mlflow_server)
    run = client.create_run(client.create_experiment("fixture-test"))
    client.log_metric(run.info.run_id, "forget_acc", 0.1)
    client.set_terminated(run.info.run_id)
    assert client.get_run(run.info.run_id).info.status == "FINISHED"


# ---- a PostgreSQL store, as the cluster files give it ------------------------------------------------
def test_postgres_store_is_created_once_migrated_and_kept_across_restarts(mlflow_launcher, postgres_store, tmp_path):
    state, port = tmp_path / "state", free_port()
    password = urllib.parse.urlsplit(postgres_store).password
    server = mlflow_launcher.start(state, port=port, backend_store_uri=postgres_store, trials=32)
    try:
        client = MlflowClient(tracking_uri=server["url"])
        run = client.create_run(client.create_experiment("on-postgres"))
        client.log_metric(run.info.run_id, "avg_gap", 0.5, step=1)
        # The store's password is in the server's environment, not on a command line `ps` shows.
        members = [pid for pid, state_ in group_of(server["pid"]) if state_ != "Z"]
        assert members and all(password.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes() for pid in members)
    finally:
        mlflow_launcher.stop(state)
    assert password not in (state / "server.log").read_text()

    # The database exists now: a second start creates nothing, upgrades nothing, and finds the run.
    assert mlflow_launcher.create_postgres_database_once(postgres_store) is False
    server = mlflow_launcher.start(state, port=port, backend_store_uri=postgres_store, trials=32)
    try:
        again = MlflowClient(tracking_uri=server["url"]).get_run(run.info.run_id)
        assert again.data.metrics == {"avg_gap": 0.5}
    finally:
        mlflow_launcher.stop(state)


def test_start_names_an_unreachable_postgres_store_without_its_password(mlflow_launcher, tmp_path):
    uri = f"postgresql://mlflow:s3cret@127.0.0.1:{free_port()}/mlflow"
    with pytest.raises(mlflow_launcher.LauncherError,
                       match=r"Cannot connect to postgresql://mlflow:\*\*\*@127\.0\.0\.1:\d+/mlflow") as refused:
        mlflow_launcher.start(tmp_path / "state", port=free_port(), backend_store_uri=uri)
    assert "s3cret" not in str(refused.value)
    assert not (tmp_path / "state" / "mlflow.pid").exists()


@pytest.mark.parametrize("trials", [1, 8, 32, 128])
@pytest.mark.parametrize("several_hosts", [False, True], ids=["uvicorn", "gunicorn"])
def test_sizing_gives_every_request_thread_a_connection_within_postgres_limit(mlflow_launcher, trials, several_hosts):
    on_sqlite = mlflow_launcher.sizing(trials, "sqlite:///mlflow.db", several_hosts=several_hosts)
    assert on_sqlite["workers"] == 1                        # one writer at a time: more would only contend
    size = mlflow_launcher.sizing(trials, "postgresql://u:p@127.0.0.1/mlflow", several_hosts=several_hosts)
    assert size["pool_size"] >= size["threads"]             # no request thread waits for a connection
    assert size["workers"] * (size["pool_size"] + size["max_overflow"]) <= POSTGRES_MAX_CONNECTIONS - 10
    if several_hosts:                                       # gunicorn threads: one per trial, at least
        assert size["workers"] * size["threads"] >= min(trials, size["workers"] * mlflow_launcher.UVICORN_THREADS)
    with pytest.raises(mlflow_launcher.LauncherError, match="--trials 0"):
        mlflow_launcher.sizing(0, "sqlite:///mlflow.db", several_hosts=several_hosts)
