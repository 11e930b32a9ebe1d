"""Part 5 of the GPU check: 1, 2, 4 and 8 concurrent trial processes sharing one GPU (fractional GPUs).

Each trial process is what a packed Tune trial is: a fresh Python process that imports torch, opens its
CUDA context and runs MixUnlearn at batch 32 (unlearn_throughput's loop, f_D untrained, random images)
for a fixed number of steps. All of them build their loop and run one untimed warm-up epoch, then wait
at a barrier; on "go" each runs one timed epoch of `packing_steps` steps. Recorded per count: the wall
time from the first start to the last end, the aggregate pairs/s, each process's own pairs/s, its
start-up (process start to ready), and the GPU's utilisation and memory, `nvidia-smi` sampled every
200 ms within the timed window. The default for `--gpus-per-trial` follows: 1/N for the smallest N
whose aggregate is within 10% of the best.

    python benchmarks/gpu_packing.py --trial --batch 32 --steps 200 --mode gpu   # one trial process (internal)
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

WITHIN_BEST = 0.9      # the recommended packing: the fewest processes reaching 90% of the best aggregate
SAMPLE_MS = 200


def packing(ctx) -> None:
    from gpu_common import part_device

    s = ctx.settings
    device = part_device(ctx)   # the part's own process checks the device; the trials open their own
    ctx.record.set(workload={"method": "mixunlearn", "model": "resnet18_cifar", "batch": s.packing_batch,
                             "steps_per_process": s.packing_steps, "counts": list(s.packing_counts),
                             "data": "random uint8 images on the device", "device": str(device)})
    rows = []
    for count in s.packing_counts:
        if rows and ctx.left() < 1.5 * rows[-1]["seconds"]:   # the processes start side by side
            rows.append({"processes": count, "status": "not run", "reason": f"the part's cap: {ctx.left():.0f} s left"})
            ctx.record.result("runs", rows)
            continue
        row = concurrent_trials(count, s.packing_batch, s.packing_steps, s.mode, timeout=ctx.left())
        rows.append(row)
        ctx.record.result("runs", rows)
        print(f"{count} processes: {row['aggregate_pairs_per_s']:.1f} pairs/s in {row['wall_s']:.2f} s, "
              f"GPU utilisation {row['gpu_utilisation']}", flush=True)
    ctx.record.result("recommendation", recommend(rows))


def recommend(rows: list[dict]) -> dict:
    done = [r for r in rows if r.get("status") == "ok"]
    if not done:
        return {}
    best = max(r["aggregate_pairs_per_s"] for r in done)
    single = next((r["aggregate_pairs_per_s"] for r in done if r["processes"] == 1), None)
    chosen = min((r for r in done if r["aggregate_pairs_per_s"] >= WITHIN_BEST * best), key=lambda r: r["processes"])
    return {"processes_per_gpu": chosen["processes"], "gpus_per_trial": round(1 / chosen["processes"], 4),
            "best_aggregate_pairs_per_s": best, "speedup_over_one": best / single if single else None,
            "rule": f"the fewest processes within {WITHIN_BEST:.0%} of the best aggregate pairs/s"}


def concurrent_trials(count: int, batch: int, steps: int, mode: str, *, timeout: float) -> dict:
    started = time.monotonic()
    command = [sys.executable, str(Path(__file__).resolve()), "--trial", "--batch", str(batch), "--steps", str(steps),
               "--mode", mode]
    procs = [subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(count)]
    sampler = None
    try:
        ready = [json.loads(expect(p, "ready", started + timeout)) for p in procs]
        sampler = Sampler()
        for p in procs:   # the barrier: every process is warm before any timed step
            p.stdin.write("go\n")
            p.stdin.flush()
        done = [json.loads(expect(p, "done", started + timeout)) for p in procs]
    finally:
        samples = sampler.stop() if sampler else []
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    first, last = min(d["start"] for d in done), max(d["end"] for d in done)
    window = [u for t, u, _m in samples if first <= t <= last]
    memory = [m for t, _u, m in samples if first <= t <= last]
    wall = last - first
    return {"processes": count, "status": "ok", "wall_s": wall, "aggregate_pairs_per_s": count * steps * batch / wall,
            "per_process_pairs_per_s": [steps * batch / (d["end"] - d["start"]) for d in done],
            "startup_s": [r["startup_s"] for r in ready],
            "peak_memory_gib_per_process": [d["peak_memory_gib"] for d in done],
            "gpu_utilisation": ({"mean": statistics.mean(window), "max": max(window), "samples": len(window)}
                                if window else ("no nvidia-smi" if sampler and not sampler.present else "no samples")),
            "gpu_memory_used_mib_max": max(memory) if memory else None,
            "seconds": round(time.monotonic() - started, 1)}


def expect(proc: subprocess.Popen, word: str, deadline: float) -> str:
    """The JSON after `word` on the process's next line; refuses a process that ended or ran past the deadline."""
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(max(0.0, deadline - time.monotonic()))
    if not box or not box[0].startswith(word + " "):
        raise RuntimeError(f"a trial process did not say {word!r} in time (exit code {proc.poll()}; "
                           f"it said {box[0].strip()[:300] if box else 'nothing'})")
    return box[0][len(word) + 1:]


class Sampler:
    """nvidia-smi's utilisation.gpu (%) and memory.used (MiB) every SAMPLE_MS, stamped on arrival."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float, float]] = []
        self.present = shutil.which("nvidia-smi") is not None
        self.proc = None
        if self.present:
            self.proc = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                                          "--format=csv,noheader,nounits", "-lms", str(SAMPLE_MS)],
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self.reader = threading.Thread(target=self.read, daemon=True)
            self.reader.start()

    def read(self) -> None:
        for line in self.proc.stdout:
            try:
                utilisation, memory = (float(x) for x in line.split(",")[:2])
            except ValueError:
                continue
            self.samples.append((time.monotonic(), utilisation, memory))

    def stop(self) -> list[tuple[float, float, float]]:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.reader.join(timeout=5)
        return self.samples


# ---- one trial process ----------------------------------------------------------------------------------

def trial(batch: int, steps: int, mode: str) -> None:
    born = time.monotonic()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import torch

    from gpu_common import cuda_path_on_cpu, peak_memory_gib, reset_peak_memory
    from unlearn_throughput import mixunlearn_loop, synthetic

    if mode == "rehearsal":
        torch.set_num_threads(1)
        cuda_path_on_cpu()
    device = torch.device("cuda" if mode == "gpu" else "cpu")
    data = synthetic("resnet18_cifar", batch * steps * 2 + 64, device)
    loop = mixunlearn_loop("resnet18_cifar", data, batch, steps, 4, device)
    loop.train_epoch()   # warm-up: allocator, cuDNN's first calls
    reset_peak_memory(device)
    print("ready " + json.dumps({"startup_s": time.monotonic() - born}), flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    start = time.monotonic()
    loop.train_epoch()   # synchronises CUDA before and after
    end = time.monotonic()
    print("done " + json.dumps({"start": start, "end": end, "peak_memory_gib": peak_memory_gib(device)}), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trial", action="store_true", required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--mode", choices=["gpu", "rehearsal"], required=True)
    args = parser.parse_args()
    trial(args.batch, args.steps, args.mode)
