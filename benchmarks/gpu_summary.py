"""summary.md of the GPU check: one line per part, then each part's figures as a short table.

Written after every part (so a run stopped from outside still leaves one), from the parts' JSON alone.
Standard library only.
"""
from __future__ import annotations

import json
from pathlib import Path

LOG = "gpu_check.log"
SUMMARY = "summary.md"


def write_summary(out: Path, parts, runner: dict, elapsed: float) -> None:
    """summary.md for `parts` (the run's, in order) from their records under `out`."""
    records = {p.name: read(out / p.file) for p in parts}
    setup = records.get("setup", {}).get("results", {})
    torch = setup.get("torch", {})
    device = next((r["device"] for r in records.values() if isinstance(r.get("device"), dict)), {})
    card = device.get("gpu") or ("CPU (rehearsal)" if runner["mode"] == "rehearsal" else "no GPU seen")
    smi = (setup.get("nvidia_smi", {}).get("query") or "").splitlines()
    lines = [f"# GPU check ({runner['mode']}): {card}", "",
             f"{runner['date']}; {elapsed:.0f} s of a {runner['budget_s']:.0f} s budget"
             + (f"; STOPPED from outside ({runner['stopped']})" if runner.get("stopped") else ""),
             f"python {device.get('python') or torch.get('version', '?')}, torch {device.get('torch') or torch.get('torch', '?')}, "
             f"CUDA {device.get('cuda') or torch.get('cuda')}, cuDNN {device.get('cudnn') or torch.get('cudnn')}"
             + (f"; nvidia-smi: {smi[1]}" if len(smi) > 1 else "")
             + f"; code {setup.get('code', {}).get('commit')} (fingerprint {setup.get('code', {}).get('fingerprint')})"]
    if runner["mode"] == "rehearsal":
        lines.append("CPU rehearsal: a tiny CIFAR-10 subset and tiny step counts, CUDA's bf16 autocast run as "
                     "CPU bf16 autocast. None of these figures is a GPU figure.")
    lines += ["", "| part | status | seconds | result |", "|---|---|---:|---|"]
    for part in parts:
        r = records[part.name]
        if not r:
            continue
        note = r.get("reason") or r.get("error") or ONE_LINE.get(part.name, lambda _r: "")(r)
        lines.append(f"| {part.number} {part.name} | {r.get('status')} | {r.get('seconds', '')} | {clean(note)} |")
    for part in parts:
        table = TABLES.get(part.name)
        if records[part.name].get("results") and table:
            lines += ["", f"## {part.number}. {part.title}", "", *table(records[part.name]["results"])]
    (out / SUMMARY).write_text("\n".join(lines) + "\n")


def read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def clean(text) -> str:
    return str(text).replace("|", "/").replace("\n", " ")[:300]


def num(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


# ---- one line per part ----------------------------------------------------------------------------------

def setup_line(r: dict) -> str:
    res = r["results"]
    wheels = res.get("wheels", {})
    installed = ", ".join(wheels.get("installed", [])) or "none"
    attackers = res.get("attackers", {})
    data = res.get("data", {})
    return (f"wheels installed: {installed}; scikit-learn "
            f"{attackers.get('sklearn') if attackers.get('importable') else 'NOT importable'}; "
            f"CIFAR-10 {data.get('train', '?')} ready in {data.get('seconds', '?')} s")


def methods_line(r: dict) -> str:
    rows = r["results"].get("methods", [])
    ran = [x for x in rows if x.get("status") == "ok"]
    nan = [x["method"] for x in ran if x.get("nan")]
    return f"{len(ran)} of {len(rows)} methods ran; NaN / Inf in: {', '.join(nan) or 'none'}"


def anchor_line(r: dict) -> str:
    return "; ".join(f"batch {x['batch']}: {num(x['pairs_per_s'], 0)} pairs/s"
                     + (f" = {x['pairs_vs_anchor']:.2f}x the anchor" if x.get("pairs_vs_anchor") else "")
                     for x in r["results"].get("rows", []))


def evaluation_line(r: dict) -> str:
    trial = r["results"].get("trial", {})
    projection = r["results"].get("paper_trial_projection", {})
    if not trial:
        return ""
    return (f"{100 * trial['evaluation_share_per_trial']:.1f}% of a {trial['epochs']}-epoch trial; projected "
            f"{100 * projection.get('share', float('nan')):.1f}% of the paper's 40-epoch trial (target <= 10%)")


def packing_line(r: dict) -> str:
    rec = r["results"].get("recommendation", {})
    return (f"best {num(rec.get('best_aggregate_pairs_per_s'), 0)} pairs/s; --gpus-per-trial {rec.get('gpus_per_trial')}"
            if rec else "")


def forgetting_line(r: dict) -> str:
    plan = r["results"].get("plan", {})
    return plan.get("summary", "")


ONE_LINE = {"setup": setup_line, "methods": methods_line, "anchor": anchor_line, "evaluation": evaluation_line,
            "packing": packing_line, "forgetting": forgetting_line}


# ---- each part's figures --------------------------------------------------------------------------------

def methods_table(res: dict) -> list[str]:
    lines = ["| method | batch | steps/s | images/s | ratio to plain | peak GiB | NaN | note |",
             "|---|---:|---:|---:|---:|---:|---|---|"]
    for x in res.get("methods", []):
        lines.append(f"| {x['method']} | {x.get('batch_size', '')} | {num(x.get('steps_per_s'), 2)} | "
                     f"{num(x.get('images_per_s'))} | {num(x.get('ratio_to_plain'), 3)} | "
                     f"{num(x.get('peak_memory_gib'), 2)} | {'NaN' if x.get('nan') else ''} | "
                     f"{clean(x.get('error') or x.get('reason') or '')} |")
    return lines


def anchor_table(res: dict) -> list[str]:
    lines = ["| batch | plain img/s | MixUnlearn pairs/s | ratio | anchor pairs/s (H100) | vs anchor |",
             "|---:|---:|---:|---:|---:|---:|"]
    for x in res.get("rows", []):
        lines.append(f"| {x['batch']} | {num(x['plain_images_per_s'])} | {num(x['pairs_per_s'])} | "
                     f"{x['ratio']:.3f} | {num(x.get('anchor_pairs_per_s'), 0)} | {num(x.get('pairs_vs_anchor'), 2)} |")
    mb = res.get("mixblock_bf16")
    if mb:
        lines += ["", f"MixBlock under the loop's autocast: mean error {mb['mean_abs_error']:.2e} against a spatial "
                      f"std of {mb['spatial_std_float32']:.2e} ({mb['error_over_spatial_std']:.2f}x); features "
                      f"cached as {mb['features_dtype_in_cache']}."]
    return lines


def evaluation_table(res: dict) -> list[str]:
    t, p, refs = res.get("trial", {}), res.get("paper_trial_projection", {}), res.get("references", {})
    if not t:
        return [f"- references: {refs}"] if refs else []
    parts = t.get("evaluation_parts_final_model", {})
    return [f"- trial: {t['train_images']} train / {t['test_images']} test images, {t['epochs']} epochs, {t['evaluation']}",
            f"- unlearning {t['unlearn_s_per_epoch']:.3f} s/epoch, evaluation {t['evaluation_s_per_epoch']:.3f} s/epoch "
            f"({100 * t['evaluation_share_per_epoch']:.1f}% per epoch, {100 * t['evaluation_share_per_trial']:.1f}% per trial)",
            f"- final model: forward passes {parts.get('forward_passes_s')} s, accuracies {parts.get('accuracies_s')} s, "
            f"attackers {parts.get('attackers_s')} s; f_D and Retrain ({refs.get('ref_epochs')} epoch) trained and "
            f"evaluated once in {refs.get('seconds')} s, {refs.get('evaluation_s')} s an evaluation",
            f"- projected, paper trial (40 epochs, rungs {p.get('attack_epochs')}): {p.get('passes')} passes, "
            f"{100 * p.get('share', float('nan')):.1f}%"]


def packing_table(res: dict) -> list[str]:
    lines = ["| processes | aggregate pairs/s | per process | wall s | GPU util % mean / max | GPU MiB max |",
             "|---:|---:|---:|---:|---|---:|"]
    for x in res.get("runs", []):
        if x.get("status") != "ok":
            lines.append(f"| {x['processes']} | {x.get('status')}: {clean(x.get('reason', ''))} | | | | |")
            continue
        util = x["gpu_utilisation"]
        util = f"{util['mean']:.0f} / {util['max']:.0f}" if isinstance(util, dict) else util
        lines.append(f"| {x['processes']} | {num(x['aggregate_pairs_per_s'])} | "
                     f"{num(min(x['per_process_pairs_per_s']))}-{num(max(x['per_process_pairs_per_s']))} | "
                     f"{x['wall_s']:.2f} | {util} | {num(x.get('gpu_memory_used_mib_max'), 0)} |")
    rec = res.get("recommendation")
    if rec:
        lines += ["", f"--gpus-per-trial {rec['gpus_per_trial']} ({rec['processes_per_gpu']} per GPU: {rec['rule']})"]
    return lines


def forgetting_table(res: dict) -> list[str]:
    return ["```", res["table"], "```"] if res.get("table") else []


TABLES = {"methods": methods_table, "anchor": anchor_table, "evaluation": evaluation_table, "packing": packing_table,
          "forgetting": forgetting_table}
