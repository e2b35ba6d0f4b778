"""Training samples per second of two or more recipes, measured one after the other in one run.

Each recipe is a training config (plus ``--set`` overrides applied to all); the trainer is built
as ``stvsr train`` builds it, then ``--warmup`` steps run untimed (the loader starts, the bank
fills its pool) and ``--steps`` steps are timed. Reported per recipe: seconds per step, samples
per second, the fraction of the timed wall time spent waiting for the next batch (loader or
bank refresh), and the one-time start-up (first batch). Run it alone on the machine: another
heavy job beside it makes the numbers meaningless.

Usage (the sfnet-s recipes before/after the frozen-store bank)::

    .venv/bin/python benchmarks/train_throughput.py configs/sfnet_s_cpu.yaml \
        configs/sfnet_s_v3_cpu.yaml --steps 64 --warmup 4 --json out/train_throughput.json

A recipe can carry its own overrides after ``+`` (on a GPU, the same config plain and banked)::

    python benchmarks/train_throughput.py configs/sfnet_s_gpu.yaml \
        "configs/sfnet_s_gpu.yaml+bank.enabled=true+data.num_workers=0+train.precision=bf16"
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from stvsr.train.config import load_config
from stvsr.train.trainer import Trainer


def measure(config: str, overrides: list[str], steps: int, warmup: int) -> dict[str, Any]:
    """Time ``warmup + steps`` training steps of ``config``; returns the measurements.

    ``config`` may carry its own overrides after ``+``:
    ``a.yaml+bank.enabled=true+data.num_workers=0``.
    """
    path, *own = config.split("+")
    cfg = load_config(path, [*overrides, *own, "val.every=0"])
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(cfg, tmp, progress=False)
        t_start = time.perf_counter()
        it = iter(tr.make_loader())
        first = wait = compute = 0.0
        for k in range(warmup + steps):
            t0 = time.perf_counter()
            batch = next(it, None)
            if batch is None:  # the loader's epoch ended: the trainer starts the next one
                it = iter(tr.make_loader())
                batch = next(it)
            t1 = time.perf_counter()
            tr.schedule.apply(tr.step)
            tr.forward_backward(batch)
            tr.optimizer_step()
            t2 = time.perf_counter()
            if k == 0:
                first = t2 - t_start
            if k >= warmup:
                wait += t1 - t0
                compute += t2 - t1
        total = wait + compute
        batch_size = cfg.data.batch_size
        return {
            "config": config, "precision": cfg.train.precision, "bank": cfg.bank.enabled,
            "batch": batch_size, "lr_patch": cfg.data.lr_patch, "num_frames": cfg.data.num_frames,
            "steps": steps, "s_per_step": total / steps,
            "samples_per_s": steps * batch_size / total,
            "data_wait_fraction": wait / total, "first_step_s": first,
            "threads": torch.get_num_threads(),
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("configs", nargs="+")
    ap.add_argument("--set", action="append", default=[], dest="overrides",
                    help="key=value applied to every config (e.g. data.root=out/corpus)")
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = [measure(c, args.overrides, args.steps, args.warmup) for c in args.configs]
    base = rows[0]["samples_per_s"]
    for r in rows:
        r["speedup_vs_first"] = r["samples_per_s"] / base
        print(f"{r['config']}: {r['s_per_step']:.3f} s/step, {r['samples_per_s']:.2f} samples/s "
              f"(x{r['speedup_vs_first']:.2f}), waiting for data {r['data_wait_fraction']:.0%}, "
              f"first step {r['first_step_s']:.1f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
