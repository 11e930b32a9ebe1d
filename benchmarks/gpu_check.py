"""The GPU check's runner: six parts, each in a process of its own under its own time cap, within one budget.

    bash benchmarks/gpu_check.sh                 # on the GPU machine (the .sh header has the device call)
    bash benchmarks/gpu_check.sh --rehearse      # the same parts on the CPU, tiny, in under 3 minutes

Parts (benchmarks/gpu_*.py; the workloads of both modes are gpu_common.Settings):
  1 setup       wheels where the image lacks them, the CIFAR-10 archive decoded, nvidia-smi and versions
  2 methods     every method of METHODS for one epoch on its CUDA path (bf16 autocast, channels_last)
  3 anchor      MixUnlearn's pairs/s at batch 32 and 512 against GPU.md's prototype
  4 evaluation  evaluation's share of a trial by the real schedule (background attackers, curve budget)
  5 packing     1, 2, 4, 8 concurrent trial processes on one GPU: aggregate pairs/s, GPU utilisation
  6 forgetting  f_D and Retrain with the paper's recipe cut to the time left; MixUnlearn and SCRUB

A part that raises is recorded as failed, one that outlives its cap (or the budget) is killed with its
whole process group and recorded as timed out, keeping what it had measured; either way the next part
runs. Parts 4 and 6 need scikit-learn's attackers: where it cannot be imported they are skipped.
Writes under --out ($OUT): one JSON per part (partN-NAME.json), summary.md and gpu_check.log: 8 files.
The runner itself uses the standard library only.
"""
from __future__ import annotations

import argparse
import importlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_carry import DATA_DIR, WHEELS_DIR  # noqa: E402
from gpu_common import MODES, ROOT, Record, read_json, write_json  # noqa: E402
from gpu_summary import LOG, write_summary  # noqa: E402

KILL_GRACE_S = 3.0      # SIGTERM to a part's process group, then SIGKILL this much later
END_MARGIN_S = 2.0      # a part's deadline ends this long before its cap: time to write its record
# A part runs in a process group of its own (killed whole at its cap), in the runner's session: the
# device machine ends every process of the command's session when it returns, a new session it would not.
OWN_GROUP = {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}


@dataclass(frozen=True)
class Part:
    number: int
    name: str
    title: str
    module: str
    needs_attackers: bool = False   # scikit-learn's MIA / ASR attackers

    @property
    def file(self) -> str:
        return f"part{self.number}-{self.name}.json"


PARTS = (
    Part(1, "setup", "Setup: wheels, data, versions", "gpu_setup"),
    Part(2, "methods", "Every method's CUDA path", "gpu_methods"),
    Part(3, "anchor", "MixUnlearn against its anchor", "gpu_methods"),
    Part(4, "evaluation", "Evaluation on the GPU", "gpu_trials", needs_attackers=True),
    Part(5, "packing", "Packing trials on one GPU", "gpu_packing"),
    Part(6, "forgetting", "Real forgetting", "gpu_trials", needs_attackers=True),
)
BY_NAME = {p.name: p for p in PARTS}


class Stopped(Exception):
    """SIGTERM or SIGINT: the outer guard (timeout in gpu_check.sh) or a person ended the run."""


@dataclass
class Context:
    """What a part's function gets: its settings, record, folders and deadline."""
    settings: object
    record: Record
    out: Path
    work: Path
    wheels: Path
    deadline: float   # time.monotonic() by which the part must be done

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def earlier(self, name: str) -> dict:
        """An earlier part's record ({} where it did not run)."""
        return read_json(self.out / BY_NAME[name].file) or {}

    @property
    def rehearsal(self) -> bool:
        return self.settings.mode == "rehearsal"


# ---- the runner -----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.child:
        return child(args)
    settings = MODES["rehearsal" if args.rehearse else "gpu"]
    caps = {**settings.caps_s, **dict(parse_cap(c) for c in args.cap)}   # a bad --cap before any folder is made
    out = Path(args.out or os.environ.get("OUT") or tempfile.mkdtemp(prefix="gpu_check-"))
    out.mkdir(parents=True, exist_ok=True)
    # On the GPU a fixed folder: a rerun on the same (still warm) machine finds the references and data.
    fresh_work = args.work is None and args.rehearse
    work = Path(args.work or (tempfile.mkdtemp(prefix="gpu_check-work-") if fresh_work else "/tmp/gpu_check-work"))
    work.mkdir(parents=True, exist_ok=True)
    names = set(args.parts.split(",")) if args.parts else set(BY_NAME)
    selected = [p for p in PARTS if p.name in names]   # always in the parts' order: later ones read earlier records
    budget = args.budget if args.budget is not None else settings.budget_s
    started = time.monotonic()
    deadline = started + budget
    env = child_env(work)
    runner = {"mode": settings.mode, "python": sys.executable, "out": str(out), "work": str(work),
              "budget_s": budget, "caps_s": caps, "parts": [p.name for p in selected],
              "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "shared_data": env.get("MIXSWEEP_SHARED_DATA")}

    def stop(signum, _frame):
        raise Stopped(signal.Signals(signum).name)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    with open(out / LOG, "a", buffering=1) as log:
        say(log, f"GPU check ({settings.mode}): parts {', '.join(p.name for p in selected)}; budget {budget:.0f} s; "
                 f"python {sys.executable}; out {out}; work {work}")
        attackers: tuple[bool, str] | None = None
        try:
            for part in selected:
                left = deadline - time.monotonic()
                minimum = settings.forgetting_min_s if part.name == "forgetting" else 5.0
                if left < minimum:
                    skip(out, part, settings, f"not enough time left ({left:.0f} s of the {budget:.0f} s budget; "
                                              f"it needs {minimum:.0f} s)", log)
                    continue
                if part.needs_attackers:
                    attackers = attackers or setup_found_attackers(out, selected) or probe_attackers(env)
                    if not attackers[0]:
                        skip(out, part, settings, f"scikit-learn cannot be imported ({attackers[1]}): the attackers "
                                                  "this part measures cannot run", log)
                        continue
                left = deadline - time.monotonic()
                cap = min(caps.get(part.name, left), left)
                run_part(part, cap, settings, out, work, env, args, log)
                write_summary(out, selected, runner, time.monotonic() - started)
        except Stopped as why:
            say(log, f"stopped ({why}): the outer guard or a person ended the run")
            runner["stopped"] = str(why)
        finally:
            runner["attackers"] = None if attackers is None else {"importable": attackers[0], "detail": attackers[1]}
            for stray in out.glob(".*.tmp"):   # a record's half-written copy, left by a part killed mid-write
                stray.unlink(missing_ok=True)
            write_summary(out, selected, runner, time.monotonic() - started)
            if fresh_work:
                shutil.rmtree(work, ignore_errors=True)
            say(log, f"done in {time.monotonic() - started:.0f} s: {out}")
    return 124 if "stopped" in runner else 0


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rehearse", action="store_true", help="the CPU rehearsal: tiny subset, tiny step counts")
    parser.add_argument("--out", help="where the JSON, summary.md and the log go (default $OUT, else a new temp folder)")
    parser.add_argument("--work", help="caches and installed wheels (default /tmp/gpu_check-work; rehearsal: a new one)")
    parser.add_argument("--parts", help=f"comma-separated; run in the parts' order (default all: {','.join(BY_NAME)})")
    parser.add_argument("--budget", type=float, help="seconds for the whole run (default: the mode's)")
    parser.add_argument("--cap", action="append", default=[], metavar="PART=SECONDS", help="a part's own time cap")
    parser.add_argument("--wheels", help=f"the carried wheels (default {WHEELS_DIR}/ in the repository)")
    parser.add_argument("--fail-part", help="test hook: this part raises as soon as it starts")
    parser.add_argument("--hang-part", help="test hook: this part sleeps until it is stopped")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--inject", help=argparse.SUPPRESS)
    parser.add_argument("--spawned", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in filter(None, [*(args.parts or "").split(","), args.fail_part, args.hang_part]):
        if name not in BY_NAME:
            parser.error(f"there is no part {name!r}; the parts are {', '.join(BY_NAME)}")
    return args


def parse_cap(text: str) -> tuple[str, float]:
    name, _, seconds = text.partition("=")
    if name not in BY_NAME or not seconds:
        raise SystemExit(f"--cap {text!r}: write PART=SECONDS with PART one of {', '.join(BY_NAME)}")
    return name, float(seconds)


def child_env(work: Path) -> dict[str, str]:
    """The parts' environment: this checkout first on the path, the wheels' folder last (they only ever
    add what the image lacks), and the carried archive as the shared data folder where it travelled."""
    env = dict(os.environ)
    path = [str(ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep)), str(work / "site")]
    env["PYTHONPATH"] = os.pathsep.join(path)
    env["PYTHONUNBUFFERED"] = "1"
    carried = ROOT / DATA_DIR
    if "MIXSWEEP_SHARED_DATA" not in env and any(carried.glob("cifar10-images-*.tar.gz")):
        env["MIXSWEEP_SHARED_DATA"] = str(carried)
    return env


def probe_attackers(env: dict[str, str]) -> tuple[bool, str]:
    """Whether the parts' interpreter imports scikit-learn (the image's or a carried wheel's)."""
    done = subprocess.run([sys.executable, "-c", "import sklearn, sklearn.svm; print(sklearn.__version__)"],
                          env=env, capture_output=True, text=True, timeout=120)
    if done.returncode == 0:
        return True, f"scikit-learn {done.stdout.strip()}"
    return False, (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]


def setup_found_attackers(out: Path, selected: list[Part]) -> tuple[bool, str] | None:
    """What this run's setup part found (it imported scikit-learn after installing the wheels), if it ran."""
    if BY_NAME["setup"] not in selected:
        return None
    found = (read_json(out / BY_NAME["setup"].file) or {}).get("results", {}).get("attackers", {})
    if "importable" not in found:
        return None
    return found["importable"], f"scikit-learn {found['sklearn']}" if found["importable"] else found["error"]


def skip(out: Path, part: Part, settings, reason: str, log) -> None:
    say(log, f"part {part.number} ({part.name}) skipped: {reason}")
    write_json(out / part.file, {"part": part.number, "name": part.name, "title": part.title, "mode": settings.mode,
                                 "status": "skipped", "reason": reason, "results": {}})


def run_part(part: Part, cap: float, settings, out: Path, work: Path, env: dict, args, log) -> None:
    """The part in its own process group, stopped at `cap`; its record completed from what happened."""
    (out / part.file).unlink(missing_ok=True)
    inject = "fail" if args.fail_part == part.name else "hang" if args.hang_part == part.name else ""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", part.name, "--mode", settings.mode,
               "--out", str(out), "--work", str(work), "--wheels", str(args.wheels or ROOT / WHEELS_DIR),
               "--deadline", str(time.monotonic() + cap - END_MARGIN_S), "--spawned", str(time.monotonic()),
               *(["--inject", inject] if inject else [])]
    say(log, f"part {part.number} ({part.name}): {part.title}; cap {cap:.0f} s")
    started = time.monotonic()
    proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, cwd=ROOT, **OWN_GROUP)
    reader = threading.Thread(target=relay, args=(proc.stdout, part.name, log), daemon=True)
    reader.start()
    outcome = None
    try:
        proc.wait(timeout=cap)
    except subprocess.TimeoutExpired:
        outcome = f"stopped at its cap of {cap:.0f} s"
    except Stopped:
        kill_group(proc)
        finish(out, part, settings, cap, started, proc.returncode, "stopped by the outer guard")
        raise
    if outcome:
        kill_group(proc)
    reader.join(timeout=5)
    record = finish(out, part, settings, cap, started, proc.returncode, outcome)
    say(log, f"part {part.number} ({part.name}): {record['status']} in {record['seconds']:.1f} s"
             + (f" ({record.get('reason') or record.get('error', '')})" if record["status"] != "ok" else ""))


def finish(out: Path, part: Part, settings, cap: float, started: float, code: int | None, outcome: str | None) -> dict:
    record = read_json(out / part.file) or {"part": part.number, "name": part.name, "title": part.title,
                                            "mode": settings.mode, "status": "running", "results": {}}
    record.update(seconds=round(time.monotonic() - started, 1), cap_s=round(cap, 1), exit_code=code)
    if outcome:
        record.update(status="timed_out", reason=f"{outcome}; what it had measured is kept")
    elif record.get("status") == "running":
        record.update(status="failed", error=f"its process ended with exit code {code} before recording a result "
                                             "(see gpu_check.log)")
    write_json(out / part.file, record)
    return record


def kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the part's whole process group (its trial processes, nvidia-smi), then SIGKILL to
    whatever of the group is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
    proc.wait()


def relay(stream, name: str, log) -> None:
    for line in iter(stream.readline, b""):
        text = f"[{name}] {line.decode(errors='replace').rstrip()}"
        log.write(text + "\n")
        print(text, flush=True)


def say(log, text: str) -> None:
    line = f"[gpu_check {time.strftime('%H:%M:%S')}] {text}"
    log.write(line + "\n")
    print(line, flush=True)


# ---- a part's own process -------------------------------------------------------------------------------

def child(args: argparse.Namespace) -> int:
    part = BY_NAME[args.child]
    settings = MODES[args.mode]
    out, work = Path(args.out), Path(args.work)
    record = Record(out / part.file, part=part.number, name=part.name, title=part.title, mode=settings.mode,
                    process={"pid": os.getpid(), "interpreter_start_s": round(time.monotonic() - args.spawned, 2)})
    started = time.perf_counter()
    try:
        if args.inject == "fail":
            raise RuntimeError(f"injected failure (--fail-part {part.name})")
        if args.inject == "hang":
            print(f"injected hang (--hang-part {part.name}): sleeping until stopped", flush=True)
            time.sleep(10**6)
        run = getattr(importlib.import_module(part.module), part.name)   # torch, mixunlearn: timed here
        record.set(process={**record.data["process"], "imports_s": round(time.perf_counter() - started, 2)})
        run(Context(settings, record, out, work, Path(args.wheels), args.deadline))
    except BaseException as exc:   # SystemExit and KeyboardInterrupt too: the record says what ended the part
        record.set(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(),
                   seconds=round(time.perf_counter() - started, 1))
        traceback.print_exc()
        return 1
    record.set(status="ok", seconds=round(time.perf_counter() - started, 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
