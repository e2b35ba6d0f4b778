"""Training checkpoints: write, prune, resume and export (methods of the trainer).

Per step ``N`` in ``OUT/checkpoints/``: ``step_N.safetensors`` (model weights, loadable by
``create_model``), ``step_N_ema.safetensors`` (EMA weights) and ``step_N.pt`` (optimizer,
schedule, scaler, RNG states, data position, config); ``latest.txt`` names the newest. Every
file is written to ``.part`` first and renamed, so a crash never leaves a half-written one.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from stvsr.errors import CheckpointError
from stvsr.train.config import config_to_dict

__all__ = ["CheckpointMixin"]


class CheckpointMixin:
    """Checkpoint methods of :class:`~stvsr.train.trainer.Trainer` (they use its ``cfg``,
    ``out``, ``module``, ``ema``, ``optimizer``, ``schedule``, ``scaler``, step counters and
    distributed state)."""

    @property
    def ckpt_dir(self) -> Path:
        return self.out / "checkpoints"

    def _metadata(self) -> dict[str, str]:
        return {"preset": self.cfg.model.preset,
                "overrides": json.dumps(self.cfg.model.overrides, sort_keys=True),
                "step": str(self.step), "format": "stvsr-train-1"}

    def save_checkpoint(self) -> Path | None:
        """Write the three checkpoint files for the current step (rank 0); returns the .pt."""
        if self.distributed:
            dist.barrier()
        if not self.is_main:
            return None
        from safetensors.torch import save_file

        d = self.ckpt_dir
        d.mkdir(parents=True, exist_ok=True)
        stem = f"step_{self.step:07d}"
        meta = self._metadata()
        _atomic(d / f"{stem}.safetensors", lambda p: save_file(_plain(self.module), p, meta))
        if self.ema is not None:
            _atomic(d / f"{stem}_ema.safetensors", lambda p: save_file(_plain(self.ema), p, meta))
        state = {
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(),
                    "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
            "config": config_to_dict(self.cfg), "world_size": self.world,
        }
        _atomic(d / f"{stem}.pt", lambda p: torch.save(state, p))
        _atomic(d / "latest.txt", lambda p: Path(p).write_text(stem + "\n"))
        self._prune()
        return d / f"{stem}.pt"

    def _prune(self) -> None:
        keep = self.cfg.train.keep_checkpoints
        stems = sorted({p.name.split(".")[0] for p in self.ckpt_dir.glob("step_*.pt")})
        for stem in stems[:-keep] if keep > 0 else []:
            for p in self.ckpt_dir.glob(f"{stem}*"):
                p.unlink(missing_ok=True)

    def _export_final(self) -> None:
        import shutil

        stem = f"step_{self.step:07d}"
        shutil.copyfile(self.ckpt_dir / f"{stem}.safetensors", self.out / "model.safetensors")
        if self.ema is not None:
            shutil.copyfile(self.ckpt_dir / f"{stem}_ema.safetensors",
                            self.out / "model_ema.safetensors")
        self.log(f"done: {self.out / 'model.safetensors'}")

    def resume(self, checkpoint: str | Path | None = None) -> bool:
        """Load ``checkpoint`` (a ``step_*.pt``) or the latest in the output folder; returns
        False when there is none to resume from."""
        from stvsr.weights import load_state_dict_strict, read_checkpoint

        if checkpoint is None:
            latest = self.ckpt_dir / "latest.txt"
            if not latest.is_file():
                return False
            checkpoint = self.ckpt_dir / (latest.read_text().strip() + ".pt")
        path = Path(checkpoint)
        if not path.is_file():
            raise CheckpointError(f"resume checkpoint {path} does not exist")
        state = torch.load(path, map_location="cpu", weights_only=False)
        stem = path.with_suffix("")
        load_state_dict_strict(self.module, read_checkpoint(f"{stem}.safetensors"),
                               source=f"{stem}.safetensors")
        if self.ema is not None:
            ema_path = Path(f"{stem}_ema.safetensors")
            src = ema_path if ema_path.is_file() else Path(f"{stem}.safetensors")
            load_state_dict_strict(self.ema, read_checkpoint(src), source=str(src))
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self._frozen = None
        self._apply_freeze()  # requires_grad as at this step, before loading the optimizer
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        rng = state["rng"]
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.log(f"resumed from {path} at step {self.step}")
        return True


def _plain(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".part")
    write(str(tmp))
    os.replace(tmp, path)

