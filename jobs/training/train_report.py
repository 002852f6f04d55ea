"""The training report written into the trained model folder:

    training_report.json   status, provenance (base model, data fingerprint, options, seed,
                           versions), data counts, per evaluation (epoch) the training loss,
                           validation loss and metric, the final validation metrics of the
                           kept (best) model, steps, time
    training_curves.png    training and validation loss, and the validation metric, per epoch
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

REPORT = "training_report.json"
CURVES = "training_curves.png"


def epoch_rows(log_history: list[dict]) -> list[dict]:
    """One row per evaluation (or logging point when there is no validation): step, epoch,
    training loss, and the validation metrics (`validation_<name>`), from transformers'
    `log_history`. Stops at the end-of-training entry (later entries are the final
    evaluation of the kept model)."""
    rows: dict[int, dict] = {}
    for entry in log_history:
        if "train_runtime" in entry:
            break
        row = rows.setdefault(int(entry.get("step", 0)), {"step": int(entry.get("step", 0))})
        row["epoch"] = round(float(entry.get("epoch", 0.0)), 4)
        if "loss" in entry:
            row["training_loss"] = float(entry["loss"])
        for key, value in entry.items():
            if key.startswith("eval_") and not key.endswith(("_runtime", "_per_second")) \
                    and isinstance(value, (int, float)):
                row["validation_" + key.removeprefix("eval_")] = float(value)
    return [rows[step] for step in sorted(rows)]


def build_report(*, spec, train_id: str, provenance: dict, data: dict, result: dict,
                 seconds: dict, workers: int, device: str, labels: list[str] | None) -> dict:
    return {
        "status": "complete", "train_id": train_id, "task": spec.task,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "provenance": provenance, "labels": labels, "data": data,
        "epochs": epoch_rows(result["log_history"]),
        "validation_metric": result.get("metric"),
        "final_metrics": result["final_metrics"],
        "final_details": result.get("final_details", {}),
        "best_step": result["best_step"], "steps": result["global_step"],
        "epochs_run": result["epochs_run"], "stopped_early": result["stopped_early"],
        "train_loss": result["train_loss"], "workers": workers, "device": device,
        "seconds": seconds,
    }


def plot_curves(report: dict, path: Any, metric: str | None, open_output) -> None:
    """Loss curves and the validation metric per evaluation, as a PNG (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["epochs"]
    panels = 2 if metric and metric != "loss" else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 3.8), squeeze=False)
    loss_axis = axes[0][0]
    for key, label in (("training_loss", "training loss"), ("validation_loss",
                                                              "validation loss")):
        points = [(r["epoch"], r[key]) for r in rows if key in r]
        if points:
            loss_axis.plot(*zip(*points), marker="o", label=label)
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("loss")
    loss_axis.set_title(f"{report['task']}: loss")
    loss_axis.legend()
    loss_axis.grid(alpha=0.3)
    if panels == 2:
        axis = axes[0][1]
        points = [(r["epoch"], r[f"validation_{metric}"]) for r in rows
                  if f"validation_{metric}" in r]
        if points:
            axis.plot(*zip(*points), marker="o", color="tab:green")
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.set_title(f"validation {metric}")
        axis.grid(alpha=0.3)
    fig.tight_layout()
    with open_output(path) as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


def summary_lines(report: dict, output: str, already: bool = False) -> list[str]:
    data = report["data"]
    train, validation = data["train"], data["validation"]
    metric = report.get("validation_metric")
    final = report["final_metrics"]
    head = ("already finished, nothing to do (output_mode: overwrite trains again): "
            if already else "")
    lines = [f"{head}trained {report['train_id']}: {report['task']} on {train['rows']} rows "
             f"({train['examples']} examples), validated on {validation['rows']} rows; "
             f"{data['rows_skipped_null']} rows skipped (a field was null)",
             f"{report['steps']} steps, {report['epochs_run']:.2f} epochs"
             f"{' (stopped early)' if report['stopped_early'] else ''} on {report['workers']} "
             f"worker(s) ({report['device']}) in {report['seconds']['total']:.1f} s"]
    if final:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in final.items()
                          if isinstance(v, (int, float)) and not isinstance(v, bool))
        lines.append(f"validation ({metric}, best at step {report['best_step']}): {shown}")
    if train["truncated"] or validation["truncated"]:
        lines.append(f"{train['truncated'] + validation['truncated']} row(s) were cut to "
                     f"max_length tokens")
    lines.append(f"model: {output}  (report: {REPORT}, curves: {CURVES})")
    return lines


def dumps(report: dict) -> bytes:
    return json.dumps(report, indent=2, default=str).encode()
