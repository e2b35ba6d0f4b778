"""Held-out validation against samples seen, and what a log-linear fit says the targets need.

Reads training runs' ``val_log.csv`` (and their ``config.yaml`` for the batch size), puts every
validated checkpoint on one curve per run (x: samples seen by the head since the run's start
point, log scale; y: held-out PSNR-Y of the new frames), fits ``score = a + b · ln(samples)``
to each run with at least three points, and reports the samples the fit needs to reach
``--target`` (a gain over the start, in dB). Writes a PNG and a JSON.

    .venv/bin/python benchmarks/learning_curve.py out/train/sfnet_s_v3_cpu \
        --start-score 33.045 --target 0.1 --png docs/results/sfnet_s_learning_curve.png \
        --json docs/results/sfnet_s_learning_curve.json

A run that continues another is given as ``DIR@SAMPLES`` (the samples seen before it), and
``--together`` fits the runs as one curve.

``--start-score`` is the held-out score of the start point (the shipped head a run continues
from), plotted at the first budget as the reference line. ``--goal SCORE`` asks instead for the
samples that reach an absolute score (say, the shipped model's, for a network trained from a
far lower start):

    .venv/bin/python benchmarks/learning_curve.py out/train/sfnet_cpu --start-score 27.9 \
        --goal 33.045 --goal-label "sfnet-s (shipped)"
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path
from typing import Any

import yaml


def run_points(run: Path, metric: str, prior: int = 0) -> dict[str, Any]:
    """``{"name", "samples": [...], "score": [...]}`` of one run's validated checkpoints;
    ``prior``: samples seen before the run started (a run continuing another)."""
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    batch = int(cfg["data"]["batch_size"])
    with open(run / "val_log.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get(metric)]
    return {"name": run.name, "samples": [prior + int(r["step"]) * batch for r in rows],
            "score": [float(r[metric]) for r in rows]}


def parse_run(arg: str) -> tuple[Path, int]:
    """``DIR`` or ``DIR@SAMPLES`` (samples seen before that run)."""
    path, _, prior = arg.partition("@")
    return Path(path), int(prior or 0)


def fit_log(samples: list[int], score: list[float]) -> tuple[float, float] | None:
    """Least-squares ``a, b`` of ``score = a + b ln(samples)`` (``None`` under 3 points)."""
    pts = [(math.log(s), y) for s, y in zip(samples, score, strict=True) if s > 0]
    if len(pts) < 3:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    b = sum((x - mx) * (y - my) for x, y in pts) / sxx
    return my - b * mx, b


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="run folders; DIR@N when N samples came before it")
    ap.add_argument("--together", action="store_true",
                    help="fit all runs' points as one curve (runs that continue each other)")
    ap.add_argument("--metric", default="psnr_y_new")
    ap.add_argument("--start-score", type=float, default=None)
    ap.add_argument("--target", type=float, default=0.1, help="gain over the start (dB)")
    ap.add_argument("--goal", type=float, default=None,
                    help="an absolute score to reach (instead of start + target)")
    ap.add_argument("--goal-label", default="goal")
    ap.add_argument("--png", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    curves = [run_points(path, args.metric, prior) for path, prior in map(parse_run, args.runs)]
    if args.together and len(curves) > 1:
        curves = [{"name": "+".join(c["name"] for c in curves),
                   "samples": [x for c in curves for x in c["samples"]],
                   "score": [y for c in curves for y in c["score"]]}]
    goal = args.goal
    if goal is None and args.start_score is not None:
        goal = args.start_score + args.target
    goal_text = (f"{args.goal_label} {goal}" if args.goal is not None
                 else f"+{args.target} dB over the start")
    for c in curves:
        fit = fit_log(c["samples"], c["score"])
        c["fit"] = None if fit is None else {"a": fit[0], "b_per_ln_sample": fit[1]}
        if fit is not None and goal is not None and fit[1] > 0:
            c["samples_for_target"] = math.exp((goal - fit[0]) / fit[1])
        print(c["name"], list(zip(c["samples"], c["score"], strict=True)), c["fit"],
              f"samples for {goal_text}:", c.get("samples_for_target"))
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for c in curves:
            ax.plot(c["samples"], c["score"], "o-", label=c["name"])
        if args.start_score is not None:
            ax.axhline(args.start_score, color="grey", ls="--", label="start point")
        if goal is not None:
            ax.axhline(goal, color="grey", ls=":", label=goal_text)
        ax.set_xscale("log")
        ax.set_xlabel("samples seen (log)")
        ax.set_ylabel(f"held-out {args.metric} (dB)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        args.png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.png, dpi=100)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"metric": args.metric, "start_score": args.start_score,
                                         "target_gain_db": args.target, "goal": goal,
                                         "goal_label": goal_text, "runs": curves},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
