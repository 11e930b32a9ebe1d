"""End to end over SSH: `ray up platform/onprem/cluster.yaml` against 127.0.0.1, a 2-trial sweep
submitted as a Ray job, its MLflow runs, `mixsweep export` on the head, `ray down`.

Everything runs in namespaces of the test's own, so that the launcher's teardown (its stop command ends every Ray
process it can see) and the cluster file's fixed ports (SSH, 6379, 8265, 5000) touch nothing else on
the machine:
- PID namespace: the teardown sees only this cluster's processes; killing the namespace's first process
  ends everything the test started, whatever state a failure left it in;
- network namespace: loopback plus a veth address (10.211.0.1) for the head's private address, which
  `hostname -I` (the cluster file's head lookup) and Ray's node-IP detection need;
- mount namespace: root's home is a folder of the test (the SSH login's ~/.bashrc, ~/.ray/auth_token,
  ~/mixsweep, ~/mixsweep-state land there), with the real folders the Python environment lives in bound
  inside it; /tmp and /run are private too.
An sshd of the test's listens on 127.0.0.1:2222 in there; `~/.ssh/config` gives `ray up` the port. The
cluster file is the shipped one with the values a site edits (head IP, no workers, SSH user, the shared
storage folder) set for this machine, and its `pip install -e ~/mixsweep` dropped: the project is
already installed in the Python the login shell finds, and reinstalling it from the synced copy would
repoint the machine's install at the test's folder.
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ONPREM = ROOT / "platform" / "onprem" / "cluster.yaml"
HEAD_IP = "10.211.0.1"      # the head's "private address", on a veth inside the network namespace
SSH_PORT = 2222
SUBMISSION_ID = "mixsweep-e2e"
SWEEP = "e2e"
DASHBOARD = "http://127.0.0.1:8265"
TINY_SPACE = {
    "base": {"dataset": "tiny", "task": "class", "forget_class": 0, "model": "cnn_small", "ref_epochs": 1,
             "epochs": 1, "batch_size": 16, "mia_samples": 100, "eval_batch_size": 512},
    "search": {"alpha": {"low": 0.1, "high": 4.0, "log": True}},
    "objectives": [{"metric": "avg_gap", "mode": "min"}],
    "sweep": {"trials": 2, "concurrency": 2, "grace_epochs": 1},
}
# Left in the namespace after `ray down` and the MLflow stop, these would mean the teardown leaks.
CLUSTER_PROCESSES = ("raylet", "gcs_server", "ray::", "default_worker", "dashboard", "log_monitor", "monitor.py",
                     "mlflow", "gunicorn", "uvicorn", "mixsweep")

# The namespaces' first process: network, mounts, sshd, then it reaps orphans until it is killed or
# the test process is gone (whatever ends pytest, a CI timeout included, ends the namespaces too).
HOLDER = r"""
set -eu
nsdir=$1 home=$2 sshd=$3 python=$4 lifeline=$5; shift 5
ip link set lo up
ip link add mxs0 type veth peer name mxs1
ip addr add {head_ip}/24 dev mxs0
ip link set mxs1 up
ip link set mxs0 up
ip route add default dev mxs0
for keep in "$@"; do mkdir -p "$nsdir/home/$keep"; mount --rbind "$home/$keep" "$nsdir/home/$keep"; done
mount --rbind "$nsdir/home" "$home"
# The repository (and the shared data beside it) and the Python environment may live under /tmp, as in a
# CI clone with its virtual environment: keep them visible at the same paths under the private /tmp.
for rel in ${MXS_KEEP_TMP:-}; do mkdir -p "$nsdir/tmp/$rel"; mount --rbind "/tmp/$rel" "$nsdir/tmp/$rel"; done
mount --rbind "$nsdir/tmp" /tmp
mount -t tmpfs tmpfs /run
mkdir -p /run/sshd
"$sshd" -f "$home/sshd/sshd_config" -E "$home/sshd/log"
touch "$home/ready"
exec "$python" -c '
import os, select, sys
lifeline = int(sys.argv[1])   # the read end of a pipe only the test holds open
while True:
    if select.select([lifeline], [], [], 1.0)[0] and not os.read(lifeline, 1):
        sys.exit(0)   # the test is gone: the namespaces end with their first process
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass
' "$lifeline"
""".replace("{head_ip}", HEAD_IP)

SSHD_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {home}/sshd/host_ed25519
AuthorizedKeysFile {home}/.ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile {home}/sshd/sshd.pid
PrintMotd no
MaxStartups 100
MaxSessions 100
Subsystem sftp internal-sftp
"""

# The MLflow record, read inside the namespace from the server's 127.0.0.1 address, where
# `ray attach cluster.yaml -p 5000` lands a user's browser.
READ_MLFLOW = """
import json
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
client = MlflowClient("http://127.0.0.1:5000")
runs = client.search_runs([e.experiment_id for e in client.search_experiments()], run_view_type=ViewType.ALL)
print(json.dumps([{"id": r.info.run_id, "name": r.info.run_name, "status": r.info.status, "tags": r.data.tags,
                   "params": r.data.params, "metrics": r.data.metrics,
                   "artifacts": [a.path for a in client.list_artifacts(r.info.run_id, "export")]} for r in runs]))
"""


def _sshd() -> str | None:
    return shutil.which("sshd", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")


def _skip_reason() -> str | None:
    if sys.platform != "linux":
        return "Linux namespaces only"
    if os.geteuid() != 0:
        return "needs root: PID, mount and network namespaces (unshare) and an sshd logging in as root"
    tools = ["unshare", "nsenter", "ip", "ssh", "ssh-keygen", "rsync"]
    missing = [tool for tool in tools if not shutil.which(tool)] + ([] if _sshd() else ["sshd"])
    if missing:
        return f"missing {', '.join(missing)}: install openssh-server, openssh-client, rsync, iproute2 (scripts/setup.sh)"
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "--net", "--mount", "--propagation",
                            "private", "ip", "link", "add", "mxs0", "type", "veth", "peer", "name", "mxs1"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"cannot create PID/mount/network namespaces with a veth pair here: {probe.stderr.strip()}"
    return None


SKIP = _skip_reason()
pytestmark = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")


def render_cluster_file(home: Path) -> dict:
    """platform/onprem/cluster.yaml with this machine's values in the places a site edits."""
    config = yaml.safe_load(ONPREM.read_text())
    config["provider"]["head_ip"] = "127.0.0.1"
    config["provider"]["worker_ips"] = []   # one machine: a worker's teardown would end the head too
    config["auth"]["ssh_user"] = "root"
    installs = [c for c in config["setup_commands"] if "pip install" in c]
    assert installs, "the on-prem file no longer installs the project: update this test"
    config["setup_commands"] = [c for c in config["setup_commands"] if "pip install" not in c]
    storage = "/mnt/shared/mixsweep/tune"
    assert any(storage in c for c in config["head_setup_commands"]), "the on-prem file's storage moved: update this test"
    config["head_setup_commands"] = [c.replace(storage, f"{home}/shared/tune") for c in config["head_setup_commands"]]
    return config


def environment_paths(python: str | Path) -> list[Path]:
    """The folders the Python environment lives in: this process's prefixes, and the root of the
    interpreter the namespaces run (holder, login shell): bin/.. of its path as named (a virtual
    environment, with its pyvenv.cfg and site-packages) and of where its links lead (a venv's python is
    a link to its base interpreter), each as named and resolved."""
    python = Path(python).absolute()
    roots = [Path(sys.prefix), Path(sys.base_prefix), python.parent.parent, python.resolve().parent.parent]
    return list(dict.fromkeys(p for root in roots for p in (root.absolute(), root.resolve())))


def kept_folders(home: Path, python: str | Path = sys.executable) -> list[str]:
    """The folders under root's home that must stay visible in the namespace: the Python environment's
    (pyenv lives in ~/.pyenv) and the repository's, when they are there."""
    kept = set()
    for path in (*environment_paths(python), ROOT.resolve()):
        if path.is_relative_to(home) and path != home:
            kept.add(path.relative_to(home).parts[0])
    return sorted(kept)


def kept_tmp_folders(python: str | Path = sys.executable) -> list[str]:
    """The folders under /tmp that must stay visible at the same path under the namespace's private /tmp:
    the repository, the shared folder beside it and the Python environment (a CI clone's virtual
    environment, `python3 -m venv /tmp/.../venv`), relative to /tmp, when they live under it. A folder
    inside another kept one comes along with it."""
    tmp = Path("/tmp").resolve()
    found = {path.relative_to(tmp) for path in (ROOT, ROOT.parent / "shared", *environment_paths(python))
             if path.exists() and path.is_relative_to(tmp) and path != tmp}
    return sorted(str(path) for path in found if not any(other != path and path.is_relative_to(other)
                                                         for other in found))


def processes_in(namespace: str) -> list[str]:
    """The command lines of the processes still in the PID namespace `namespace` (host's view)."""
    left = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "ns" / "pid") == namespace:
                left.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return left


class Namespaces:
    """The test's PID + mount + network namespaces, with sshd running, and commands run inside them.
    `python`: the interpreter the holder and the login shell's PATH use (this one by default)."""

    def __init__(self, folder: Path, *, python: str | Path = sys.executable):
        self.home = Path(pwd.getpwuid(0).pw_dir)
        self.folder = folder
        self.python = Path(python).absolute()
        self.inner_home = folder / "home"   # root's home inside
        (folder / "tmp").mkdir(parents=True)
        ssh, sshd = self.inner_home / ".ssh", self.inner_home / "sshd"
        ssh.mkdir(parents=True, mode=0o700)
        sshd.mkdir(mode=0o700)
        for key in (ssh / "id_ed25519", sshd / "host_ed25519"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
        shutil.copy(ssh / "id_ed25519.pub", ssh / "authorized_keys")
        (ssh / "config").write_text(f"Host 127.0.0.1 localhost {HEAD_IP}\n  Port {SSH_PORT}\n")
        (sshd / "sshd_config").write_text(SSHD_CONFIG.format(port=SSH_PORT, home=self.home))
        # The login shell's PATH: `ray up` runs `ray start` over SSH, and `ray down` runs the stop command
        # there, which silently does nothing when `ray` is not found.
        (self.inner_home / ".bashrc").write_text(f"export PATH={self.python.parent}:$PATH\n")
        (folder / "holder.sh").write_text(HOLDER)
        self.unshare: subprocess.Popen | None = None
        self.init_pid: int | None = None
        self.namespace: str | None = None

    def start(self) -> None:
        folder = self.folder
        lifeline, self._lifeline = os.pipe()
        with open(folder / "holder.log", "w") as log:
            self.unshare = subprocess.Popen(
                ["unshare", "--pid", "--kill-child", "--mount-proc", "--net", "--mount", "--propagation", "private",
                 "bash", str(folder / "holder.sh"), str(folder), str(self.home), _sshd(), str(self.python),
                 str(lifeline), *kept_folders(self.home, self.python)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                pass_fds=(lifeline,), env={**os.environ, "MXS_KEEP_TMP": " ".join(kept_tmp_folders(self.python))})
        os.close(lifeline)
        deadline = time.monotonic() + 30
        while self.init_pid is None or not (self.inner_home / "ready").exists():
            if self.unshare.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the namespaces did not come up: {(folder / 'holder.log').read_text()}")
            if self.init_pid is None:
                children = Path(f"/proc/{self.unshare.pid}/task/{self.unshare.pid}/children").read_text().split()
                if children:
                    self.init_pid = int(children[0])
                    self.namespace = os.readlink(f"/proc/{self.init_pid}/ns/pid")
            time.sleep(0.1)

    def run(self, command: str, *, timeout: float, cwd: str | Path | None = None) -> subprocess.CompletedProcess:
        """`command` in bash inside the namespaces, in a clean environment as a user's shell has it."""
        env = [f"HOME={self.home}", "USER=root", "LANG=C.UTF-8", "TERM=dumb",
               f"PATH={self.python.parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "RAY_AUTH_MODE=token",           # explicit: the cluster runs with token authentication
               "RAY_USAGE_STATS_ENABLED=0"]
        return subprocess.run(["nsenter", "-t", str(self.init_pid), "--pid", "--mount", "--net",
                               f"--wd={cwd or self.home}", "env", "-i", *env, "bash", "-c", command],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)

    def close(self) -> list[str]:
        """Kill the namespaces' first process (the kernel then ends every process in them; unshare's
        --kill-child does the same if only unshare is known); return the command lines of any process
        of the namespace still alive afterwards."""
        for pid in (self.init_pid, self.unshare.pid if self.unshare else None):
            if pid is not None:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
        if self.unshare is not None:
            self.unshare.wait(timeout=30)
            os.close(self._lifeline)
        deadline = time.monotonic() + 30
        while self.namespace and processes_in(self.namespace) and time.monotonic() < deadline:
            time.sleep(0.2)
        return processes_in(self.namespace) if self.namespace else []


def check(done: subprocess.CompletedProcess, what: str) -> str:
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{what} failed (exit {done.returncode}):\n{output[-6000:]}"
    return output


def test_ray_up_the_onprem_file_over_ssh_run_a_sweep_job_and_ray_down(tmp_path):
    started = time.monotonic()
    steps: dict[str, float] = {}

    def step(name: str, command: str, timeout: float, **kwargs) -> str:
        begun = time.monotonic()
        output = check(spaces.run(command, timeout=timeout, **kwargs), name)
        steps[name] = round(time.monotonic() - begun, 1)
        (tmp_path / f"{len(steps):02d}-{name.replace(' ', '-')}.log").write_text(output)
        return output

    spaces = Namespaces(tmp_path / "ns")
    try:
        spaces.start()
        home = spaces.home
        (spaces.inner_home / "cluster.yaml").write_text(yaml.safe_dump(render_cluster_file(home), sort_keys=False))
        (spaces.inner_home / "tiny.yaml").write_text(yaml.safe_dump(TINY_SPACE, sort_keys=False))
        cluster = f"{home}/cluster.yaml"

        # Only the test's processes are visible in there: the teardown cannot reach anything else.
        visible = step("ps before", "ps -eo args=", 30)
        assert not any(name in visible for name in ("raylet", "gcs_server")), visible

        # What a user does first: a token, then `ray up` (from the repository root: the file mounts
        # sync "." to ~/mixsweep on every node).
        step("token", "ray get-auth-token --generate > /dev/null", 60)
        up = step("ray up", f"ray up -y --no-config-cache {cluster}", 420, cwd=ROOT)
        assert "Ray runtime started" in up, up[-3000:]
        env = (spaces.inner_home / "mixsweep.env").read_text()
        assert f"MLFLOW_TRACKING_URI=http://{HEAD_IP}:5000" in env and "RAY_AUTH_MODE=token" in env, env

        # The sweep as a Ray job: `--no-wait` returns at once, as when the laptop disconnects; the job
        # finds the tracking URI and the storage in the environment the head's `ray start` was given.
        submitted = step("job submit", f"ray job submit --address {DASHBOARD} --submission-id {SUBMISSION_ID} "
                         f"--no-wait -- bash -c 'cd ~/mixsweep && mixsweep run {home}/tiny.yaml --address auto --trials 2 "
                         f"--concurrency 2 --name {SWEEP}'", 120)
        assert SUBMISSION_ID in submitted
        logs = step("job logs", f"ray job logs --address {DASHBOARD} --follow {SUBMISSION_ID}", 420)
        assert f"Job '{SUBMISSION_ID}' succeeded" in logs, logs[-4000:]   # --follow ends with the status
        assert f"sweep {SWEEP} done: 2 of 2 trials ended normally" in logs, logs[-4000:]
        assert f"MLflow http://{HEAD_IP}:5000" in logs and f"{home}/shared/tune/{SWEEP}" in logs, logs[-4000:]

        # `mixsweep export` on the head, as `ray exec` runs it: the same environment finds the sweep.
        exported = step("export", f"ray exec {cluster} 'cd ~/mixsweep && mixsweep export {SWEEP}'", 300)
        assert f"config:  {home}/shared/tune/{SWEEP}/export/best.yaml" in exported, exported[-3000:]

        runs = json.loads(step("mlflow", f"python - <<'EOF'\n{READ_MLFLOW}\nEOF", 180).strip().splitlines()[-1])
        parents = [r for r in runs if r["name"] == SWEEP]
        assert len(parents) == 1, runs
        parent = parents[0]
        children = [r for r in runs if r["tags"].get("mlflow.parentRunId") == parent["id"]]
        assert parent["status"] == "FINISHED" and parent["params"]["storage"] == f"{home}/shared/tune"
        assert parent["params"]["address"] == "auto"
        assert "export/best.yaml" in parent["artifacts"] and "export/trials.parquet" in parent["artifacts"]
        assert len(children) == 2 and {c["status"] for c in children} == {"FINISHED"}
        assert {c["tags"]["mixsweep.node_ip"] for c in children} == {HEAD_IP}
        assert all("avg_gap" in c["metrics"] for c in children)

        # Teardown as the cluster file says: the MLflow server and its PostgreSQL first (`ray down` ends Ray only).
        step("mlflow stop", f"ray exec {cluster} 'python ~/mixsweep/platform/mlflow/server.py stop "
             f"--state-dir ~/mixsweep-state'", 120)
        step("postgres stop", f"ray exec {cluster} 'python ~/mixsweep/platform/mlflow/postgres.py stop "
             f"--state-dir ~/mixsweep-state'", 120)
        down = step("ray down", f"ray down -y {cluster}", 300, cwd=ROOT)
        assert "Stopped all" in down, down[-3000:]   # its stop command found `ray` on the login PATH
        time.sleep(2)
        after = step("ps after", "ps -eo stat=,args=", 30)
        running = [line for line in after.splitlines() if line.strip() and not line.split()[0].startswith("Z")]
        leaked = [line for line in running if any(name in line for name in CLUSTER_PROCESSES)]
        assert not leaked, "`ray down` left these running:\n" + "\n".join(leaked)
    finally:
        left = spaces.close()
        print(f"on-prem cluster over SSH: {time.monotonic() - started:.0f} s, steps {steps}; logs in {tmp_path}")
    assert not left, f"processes of the test's namespace outlived it: {left}"


def test_the_namespaces_come_up_with_an_interpreter_that_lives_under_tmp(tmp_path):
    """A fresh clone's virtual environment under /tmp (`python3 -m venv /tmp/.../venv`, as CI makes one):
    the namespaces' private /tmp keeps it at the same path, so their holder (this interpreter) starts and
    a login shell there finds it first on its PATH."""
    folder = Path(tempfile.mkdtemp(prefix="mxs-venv-", dir="/tmp"))
    try:
        venv = folder / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
        python = venv / "bin" / "python"
        assert any(venv.relative_to("/tmp").is_relative_to(kept) for kept in kept_tmp_folders(python))
        spaces = Namespaces(tmp_path / "ns", python=python)
        try:
            spaces.start()   # "the namespaces did not come up: ... venv/bin/python: No such file" before
            inside = spaces.run("python -c 'import sys; print(sys.prefix)'; ls /tmp", timeout=60)
            prefix, *listed = inside.stdout.split()
            assert inside.returncode == 0 and prefix == str(venv), inside.stdout + inside.stderr
            assert folder.name in listed                               # kept, at the same path
            assert not set(listed) - {p.split("/")[0] for p in kept_tmp_folders(python)}   # and /tmp private
        finally:
            left = spaces.close()
        assert not left, f"processes of the test's namespace outlived it: {left}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)
