"""The per-run summary stored in run.json (what tables and rankings read).

Keys (None where undefined):
  final_accuracy, max_accuracy, final_loss   test set, from eval.csv
  steps_to_<a>          first evaluated step (updates applied) with accuracy >= a
  condition_share       share of steps where the variance-norm condition held, over the
                        steps where it is defined (a bound exists, the ratio is finite)
  condition_steps       how many steps that share is over
  honest_ratio_median, sampled_ratio_median   medians of the per-step (deviation / norm)²
  bound_squared         the rule's upper_bound(n, f, d)²
  divergence_step       index of the step whose loss or parameters became non-finite
With replicated servers (config servers > 1) also:
  final_worst_accuracy, final_median_accuracy   over the correct servers' models
  max_server_drift, final_server_drift          largest distance between two correct
                        servers' models, over the steps and at the last step
  max_server_drift_ratio  that distance over the norm of their mean model, at its largest
  gathers               how many gathers took place
"""
from __future__ import annotations

import math
import statistics

ACCURACY_TARGETS = (0.5, 0.8, 0.9)


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def steps_to_reach(eval_rows: list[dict], target: float) -> int | None:
    """The first evaluated step whose test accuracy is at least `target` (None if never)."""
    return next((row["step"] for row in eval_rows if row["accuracy"] >= target), None)


def _median(metric_rows: list[dict], column: str) -> float | None:
    values = [row[column] for row in metric_rows
              if column in row and math.isfinite(row[column])]
    return statistics.median(values) if values else None


def summarize(metric_rows: list[dict], eval_rows: list[dict], status: str, steps_done: int,
              targets: tuple[float, ...] = ACCURACY_TARGETS) -> dict:
    accuracies = [row["accuracy"] for row in eval_rows]
    held = [row["condition_held"] for row in metric_rows
            if not math.isnan(row.get("condition_held", math.nan))]
    bounds = [row["bound_squared"] for row in metric_rows[:1] if "bound_squared" in row]
    summary = {
        "final_accuracy": _finite(accuracies[-1]) if accuracies else None,
        "max_accuracy": max(filter(math.isfinite, accuracies), default=None),
        "final_loss": _finite(eval_rows[-1]["loss"]) if eval_rows else None,
        "condition_share": sum(held) / len(held) if held else None,
        "condition_steps": len(held),
        "honest_ratio_median": _median(metric_rows, "honest_ratio"),
        "sampled_ratio_median": _median(metric_rows, "sampled_ratio"),
        "bound_squared": _finite(bounds[0]) if bounds else None,
        "divergence_step": steps_done if status == "diverged" else None,
    }
    for target in targets:
        summary[f"steps_to_{target:g}"] = steps_to_reach(eval_rows, target)
    if eval_rows and "worst_accuracy" in eval_rows[-1]:
        summary.update(_servers(metric_rows, eval_rows))
    return summary


def _servers(metric_rows: list[dict], eval_rows: list[dict]) -> dict:
    drifts = [row["server_drift"] for row in metric_rows
              if math.isfinite(row.get("server_drift", math.nan))]
    ratios = [row["server_drift_ratio"] for row in metric_rows
              if math.isfinite(row.get("server_drift_ratio", math.nan))]
    return {"final_worst_accuracy": _finite(eval_rows[-1]["worst_accuracy"]),
            "final_median_accuracy": _finite(eval_rows[-1]["median_accuracy"]),
            "max_server_drift": max(drifts, default=None),
            "final_server_drift": drifts[-1] if drifts else None,
            "max_server_drift_ratio": max(ratios, default=None),
            "gathers": int(sum(row.get("gathered", 0) for row in metric_rows))}
