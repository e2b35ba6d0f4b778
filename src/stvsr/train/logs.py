"""Training logs and validation (methods of the trainer).

``OUT/train_log.csv``: step, epoch, loss, lr, grad norm, seconds per step (rows after the
resume point are dropped on resume); ``OUT/val_log.csv``: validation scores; TensorBoard
scalars under ``OUT/tb`` when TensorBoard is installed.
"""

from __future__ import annotations

import csv
import time
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["LogMixin"]


class LogMixin:
    """Logging and validation methods of :class:`~stvsr.train.trainer.Trainer` (they use its
    ``cfg``, ``out``, ``step``, ``epoch``, ``module``, ``ema``, ``kind``, ``device`` and
    distributed state)."""

    # ---- logging ------------------------------------------------------------------------
    _TRAIN_FIELDS = ["step", "epoch", "loss", "lr", "grad_norm", "sec_per_step"]

    def _open_logs(self) -> None:
        path = self.out / "train_log.csv"
        rows = []
        if path.is_file():  # keep rows up to the resume point only
            with open(path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= self.step]
        self._csv_fh = open(path, "w", newline="")
        self._csv = csv.DictWriter(self._csv_fh, fieldnames=self._TRAIN_FIELDS)
        self._csv.writeheader()
        self._csv.writerows(rows)
        self._csv_fh.flush()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.out / "tb"))
        except Exception:  # noqa: BLE001 - TensorBoard is optional
            self._tb = None

    def _close_logs(self) -> None:
        fh = getattr(self, "_csv_fh", None)
        if fh is not None:
            fh.close()
            self._csv_fh = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def _log_row(self, lr: float, losses: list[float], norm: float | None, sec: float) -> None:
        if not self.is_main:
            return
        row = {"step": self.step, "epoch": self.epoch, "loss": f"{np.mean(losses):.8g}",
               "lr": f"{lr:.6g}", "grad_norm": "" if norm is None else f"{norm:.6g}",
               "sec_per_step": f"{sec:.4f}"}
        self._csv.writerow(row)
        self._csv_fh.flush()
        if self._tb is not None:
            self._tb.add_scalar("train/loss", float(np.mean(losses)), self.step)
            self._tb.add_scalar("train/lr", lr, self.step)

    # ---- validation ---------------------------------------------------------------------
    def validate(self) -> dict[str, Any] | None:
        """Score the (EMA) model on ``val.data`` with the evaluate functions (rank 0)."""
        result = None
        if self.is_main:
            v = self.cfg.val
            net = self.ema if (v.use_ema and self.ema is not None) else self.module
            was_training = net.training
            net.eval()
            task = v.task if v.task != "auto" else (
                "stvsr" if self.kind == "spacetime" else "svsr")
            t0 = time.perf_counter()
            try:
                with torch.no_grad():
                    if task == "stvsr":
                        from stvsr.eval import evaluate_spacetime

                        result = evaluate_spacetime(net, v.data, protocol=v.protocol,
                                                    degradation=v.degradation,
                                                    max_frames=v.max_frames,
                                                    device=str(self.device), progress=False)
                    else:
                        from stvsr.eval import evaluate_svsr

                        result = evaluate_svsr(net, v.data, degradation=v.degradation,
                                               max_frames=v.max_frames,
                                               device=str(self.device), progress=False)
            finally:
                net.train(was_training)
            mean = result["mean"]
            row = {"step": self.step, "seconds": round(time.perf_counter() - t0, 2),
                   **{k: round(float(x), 4) for k, x in mean.items()}}
            path = self.out / "val_log.csv"
            new = not path.is_file()
            with open(path, "a", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=list(row))
                if new:
                    w.writeheader()
                w.writerow(row)
            if self._tb is not None:
                for k, x in mean.items():
                    self._tb.add_scalar(f"val/{k}", float(x), self.step)
            self.log(f"step {self.step}: val " + ", ".join(f"{k} {x:.4f}" for k, x in mean.items()))
        if self.distributed:
            dist.barrier()
        return result

