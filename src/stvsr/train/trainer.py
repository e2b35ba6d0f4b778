"""Config-driven trainer for every model kind (window, recurrent, spacetime).

One :class:`Trainer` runs single-process or under ``torchrun`` (DistributedDataParallel; gloo
on CPU, nccl on CUDA; rank 0 logs, validates and writes checkpoints). Its state after every
step is fully described by the model, the EMA copy, the optimizer, the step, the data position
``(epoch, batch)`` and the RNG states, all of which the checkpoints hold, so ``--resume``
continues bit for bit: the data order is a function of ``(seed, epoch)`` (:class:`StepSampler`)
and each item's randomness a function of ``(seed, epoch, index)`` (the dataset).

Output folder layout::

    OUT/config.yaml                      the validated config
    OUT/train_log.csv, OUT/val_log.csv   step, loss, lr, grad norm, time / validation scores
    OUT/checkpoints/step_NNNNNNN.safetensors       model weights (loadable by create_model)
    OUT/checkpoints/step_NNNNNNN_ema.safetensors   EMA weights (when train.ema_decay > 0)
    OUT/checkpoints/step_NNNNNNN.pt                optimizer, schedule, RNG, data position
    OUT/checkpoints/latest.txt                     name of the newest checkpoint
    OUT/model.safetensors (+ model_ema.safetensors) the final weights

Ctrl-C (SIGINT) finishes the current step, writes a checkpoint and raises
``KeyboardInterrupt``; a second Ctrl-C aborts at once.

This module holds the loop (:class:`Trainer`: set-up, freezing, one step, ``fit``, signals);
the parts live beside it: :mod:`~stvsr.train.builders` (model, dataset, optimizer, schedule,
loss), :mod:`~stvsr.train.sampler` (:class:`StepSampler`), :mod:`~stvsr.train.ema`,
:mod:`~stvsr.train.checkpoint` (save / resume / export) and :mod:`~stvsr.train.logs` (CSV,
TensorBoard, validation).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.utils.data import DataLoader

from stvsr.errors import StvsrError
from stvsr.infer.defaults import warn_if_bf16_emulated
from stvsr.train.builders import (
    build_dataset,
    build_loss,
    build_model,
    build_optimizer,
    build_scaler,
    build_schedule,
    data_mode,
    param_matches,
    resolve_init_weights,
)
from stvsr.train.checkpoint import CheckpointMixin
from stvsr.train.config import Config, ConfigError, config_to_dict
from stvsr.train.ema import make_ema, update_ema
from stvsr.train.logs import LogMixin
from stvsr.train.losses import compute_loss
from stvsr.train.sampler import StepSampler
from stvsr.train.state import load_train_state, resolve_init_state, write_lineage
from stvsr.train.store_bank import BankBatch, StoreBank, head_window

__all__ = ["StepSampler", "Trainer", "build_dataset", "build_model", "train"]


class Trainer(CheckpointMixin, LogMixin):
    """Builds everything from a :class:`Config` and runs the loop (see module docstring)."""

    def __init__(self, cfg: Config, out_dir: str | Path | None = None, *,
                 progress: bool = True) -> None:
        self.cfg = cfg
        self.out = Path(out_dir or cfg.train.out_dir)
        self.progress = progress
        t = cfg.train
        self._init_distributed()
        if t.threads:
            torch.set_num_threads(t.threads)
        self.device = self._pick_device(t.device)
        if t.precision == "fp16" and self.device.type != "cuda":
            raise ConfigError("train.precision fp16 needs a CUDA device; use bf16 or fp32 on CPU")
        warn_if_bf16_emulated(t.precision, self.device.type, "--set train.precision=fp32")
        self._seed_everything(t.seed)
        self.module = build_model(cfg, log=self.log).to(self.device)
        if t.channels_last:  # the explicit speed step: a memory layout, the same weights
            self.module.to(memory_format=torch.channels_last)
        self.kind = self.module.kind
        self.dataset = build_dataset(cfg, data_mode(cfg, self.module))
        self.sampler = StepSampler(len(self.dataset), cfg.data.batch_size, rank=self.rank,
                                   world=self.world, seed=t.seed)
        self.ema = make_ema(self.module) if t.ema_decay > 0 else None
        self.optimizer = build_optimizer(cfg, self.module)
        self.schedule = build_schedule(cfg, self.optimizer)
        self.scaler = build_scaler(cfg)
        self.pixel = build_loss(cfg)
        self._continue_state()
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.history: list[tuple[int, float]] = []
        self._frozen: bool | None = None
        self.model: nn.Module = self.module
        self._apply_freeze()
        self.bank = self._build_bank()
        self._stop_requested = False
        self._tb = None

    # ---- setup helpers ------------------------------------------------------------------
    def _init_distributed(self) -> None:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1 and not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend)
        self.distributed = dist.is_initialized() and dist.get_world_size() > 1
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        self.is_main = self.rank == 0

    def _continue_state(self) -> None:
        """``model.init_state``: load the raw weights and optimizer state kept beside the init
        weights (the EMA copy stays the init file's weights), and record what was continued."""
        m = self.cfg.model
        init = resolve_init_weights(m.init) if m.init else None
        path = resolve_init_state(m.init_state, init)
        if path is None or init is None:
            if m.init_state == "auto":
                self.log("init_state: no training state beside the init weights; "
                         "fresh optimizer")
            return
        info = load_train_state(self.module, self.optimizer, path, init,
                                strict=m.init_state != "auto")
        if info is None:
            self.log(f"init_state: {path} does not pair with {init}; fresh optimizer")
            return
        self.log(f"init_state: continued {path} ({info['steps']} steps, "
                 f"{info['samples']} samples before this run)")
        if self.is_main:
            write_lineage(self.out, info)

    def _pick_device(self, name: str) -> torch.device:
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        dev = torch.device(name)
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise ConfigError("train.device is cuda but no CUDA device is available")
            if dev.index is None:
                index = int(os.environ.get("LOCAL_RANK", self.rank)) if self.distributed \
                    else torch.cuda.current_device()
                dev = torch.device("cuda", index)
            torch.cuda.set_device(dev)
            torch.backends.cuda.matmul.allow_tf32 = True  # fp32 recipes: TF32 tensor cores
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True
        return dev

    @staticmethod
    def _seed_everything(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)

    def log(self, msg: str) -> None:
        if self.is_main and self.progress:
            print(msg, file=sys.stderr)

    # ---- freezing / DDP -----------------------------------------------------------------
    def _apply_freeze(self) -> None:
        """Set ``requires_grad`` for the current step and (re)wrap DDP when it changes."""
        f = self.cfg.freeze
        frozen = f.steps > 0 and self.step < f.steps
        if frozen == self._frozen:
            return
        n_train = 0
        for name, p in self.module.named_parameters():
            train = True
            if frozen:
                wanted = not f.train_only or param_matches(name, f.train_only)
                train = wanted and not param_matches(name, f.patterns)
            p.requires_grad_(train)
            n_train += int(train)
        if frozen and n_train == 0:
            raise ConfigError("freeze leaves no trainable parameter; check freeze.train_only")
        if frozen:
            self.log(f"step {self.step}: training {n_train} parameter tensors until step {f.steps}")
        elif self._frozen:
            self.log(f"step {self.step}: all parameters trainable")
        self._frozen = frozen
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DDP(self.module, device_ids=ids,
                             find_unused_parameters=self.cfg.train.find_unused_parameters)
        else:
            self.model = self.module

    # ---- data ---------------------------------------------------------------------------
    def _build_bank(self) -> StoreBank | None:
        """The frozen-store bank when ``bank.enabled`` (see :mod:`stvsr.train.store_bank`)."""
        b = self.cfg.bank
        if not b.enabled:
            return None
        if self.distributed:
            raise ConfigError("bank.enabled runs in one process (one GPU or the CPU); "
                              "drop torchrun or set bank.enabled: false")
        if not self.cfg.freeze.train_only:
            raise ConfigError("bank.enabled needs a frozen backbone: set freeze.train_only")
        return StoreBank(self.module, self.dataset, batch_size=self.sampler.per_rank,
                         seed=self.cfg.train.seed, pool=b.pool, refresh=b.refresh,
                         max_inputs=b.max_inputs, device=self.device, autocast=self._autocast)

    def make_loader(self) -> Iterable[dict[str, Any]]:
        """A loader for the current ``(epoch, batch_in_epoch)`` position (or the bank's batches
        from the current step)."""
        if self.bank is not None:
            return self.bank.batches(self.step)
        if self.batch_in_epoch >= self.sampler.batches_per_epoch:
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        self.dataset.set_epoch(self.epoch)
        self.sampler.set_epoch(self.epoch, self.batch_in_epoch)
        nw = self.cfg.data.num_workers
        return DataLoader(self.dataset, batch_size=self.sampler.per_rank, sampler=self.sampler,
                          num_workers=nw, pin_memory=self.device.type == "cuda",
                          persistent_workers=False, drop_last=False,
                          prefetch_factor=2 if nw else None)

    # ---- one step -----------------------------------------------------------------------
    def _autocast(self):
        p = self.cfg.train.precision
        if p == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if p == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def forward_backward(self, batch: dict[str, Any]) -> torch.Tensor:
        """Loss of this rank's share of the batch, back-propagated (gradients are averaged
        over ranks by DDP); returns the detached loss, scaled to the global batch."""
        if "bank" in batch:
            return self._bank_forward_backward(batch["bank"])
        lr = batch["lr"].to(self.device, non_blocking=True)
        gt = batch["gt"].to(self.device, non_blocking=True)
        # with "sum" each rank sums its share: scale so the DDP mean equals the global sum
        factor = float(self.world) if self.cfg.loss.reduction == "sum" else 1.0
        with self._autocast():
            loss = compute_loss(self.model, self.kind, lr, gt, self.cfg.loss, self.pixel) * factor
        if not torch.isfinite(loss):
            raise StvsrError(f"loss became {loss.item()} at step {self.step + 1}; lower optim.lr "
                             "or enable train.grad_clip")
        (self.scaler.scale(loss) if self.scaler else loss).backward()
        return loss.detach()

    def _bank_forward_backward(self, bank: BankBatch) -> torch.Tensor:
        """The head's loss on a bank batch (the frozen outputs are already in it)."""
        bank = bank.to(self.device)
        with self._autocast():
            loss = self.pixel(head_window(self.module, bank), bank.gt)
        if not torch.isfinite(loss):
            raise StvsrError(f"loss became {loss.item()} at step {self.step + 1}; lower optim.lr "
                             "or enable train.grad_clip")
        (self.scaler.scale(loss) if self.scaler else loss).backward()
        return loss.detach()

    def optimizer_step(self, want_norm: bool = False) -> float | None:
        """Clip, step the optimizer, update the EMA and the step counter."""
        params = [p for p in self.module.parameters() if p.grad is not None]
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        norm = None
        clip = self.cfg.train.grad_clip
        if clip is not None:
            norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
        elif want_norm and params:
            norm = float(torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(p.grad.float()) for p in params])))
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self._update_ema()
        self.step += 1
        self.batch_in_epoch += 1
        return norm

    def _update_ema(self) -> None:
        update_ema(self.ema, self.module, self.cfg.train.ema_decay)

    # ---- loop ---------------------------------------------------------------------------
    def fit(self, max_steps: int | None = None) -> dict[str, Any]:
        """Train until ``max_steps`` (default ``train.total_steps``; the schedule always follows
        ``total_steps``/``periods``), writing logs and checkpoints; returns a summary."""
        t = self.cfg.train
        stop = min(t.total_steps, max_steps) if max_steps else t.total_steps
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(yaml.safe_dump(config_to_dict(self.cfg),
                                                                 sort_keys=False))
            self._open_logs()
        old = self._install_sigint()
        bar = None
        if self.is_main and self.progress:
            from tqdm import tqdm

            bar = tqdm(total=stop, initial=self.step, unit="step", dynamic_ncols=True)
        window: list[float] = []
        t_last = t_start = time.perf_counter()
        step0 = self.step
        budget = t.max_minutes * 60 if t.max_minutes else None
        time_up = False
        t_probe = 0.0
        saved_at = -1
        try:
            while self.step < stop and not self._stop_requested:
                for batch in self.make_loader():
                    self._apply_freeze()
                    lr_now = self.schedule.apply(self.step)
                    loss = self.forward_backward(batch)
                    log_now = (self.step + 1) % t.log_every == 0 or self.step + 1 == stop
                    norm = self.optimizer_step(want_norm=log_now)
                    value = float(self._mean_over_ranks(loss))
                    self.history.append((self.step, value))
                    window.append(value)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{value:.4g}", lr=f"{lr_now:.2e}")
                    if log_now:
                        now = time.perf_counter()
                        self._log_row(lr_now, window, norm, (now - t_last) / len(window))
                        window, t_last = [], now
                    if self.cfg.val.every and self.step % self.cfg.val.every == 0:
                        self.validate()
                    if self.step % t.ckpt_every == 0:
                        self.save_checkpoint()
                        saved_at = self.step
                    if budget is not None:
                        elapsed = time.perf_counter() - t_start
                        if self.step - step0 == 10:
                            t_probe = elapsed  # after start-up (workers, kernel selection)
                        if self.step - step0 == 60:
                            stop = self._fit_to_time(stop, (elapsed - t_probe) / 50,
                                                     budget - elapsed)
                            if bar is not None:
                                bar.total = stop
                        if elapsed >= budget:
                            self.log(f"time budget of {t.max_minutes} min reached at step "
                                     f"{self.step}")
                            stop = self.step
                            time_up = True
                    if self._agree_stop() or self.step >= stop:
                        break
        except KeyboardInterrupt:  # second Ctrl-C, or one outside the handler
            self._stop_requested = True
            if not self.distributed and saved_at != self.step and self.step > 0:
                self.save_checkpoint()  # the state between steps is consistent
                saved_at = self.step
            raise
        finally:
            if bar is not None:
                bar.close()
            self._restore_sigint(old)
            if self.is_main:
                self._close_logs()
        if saved_at != self.step and self.step > 0:
            self.save_checkpoint()
        if self._stop_requested:
            self.log(f"interrupted at step {self.step}; checkpoint written, continue with "
                     "--resume")
            raise KeyboardInterrupt
        if self.is_main and (self.step >= t.total_steps or time_up):
            self._export_final()
        return {"step": self.step, "history": self.history, "out_dir": str(self.out)}

    def _fit_to_time(self, stop: int, step_time: float, left: float) -> int:
        """Shrink ``total_steps`` (and the schedule's periods in proportion) so the remaining
        steps fit in ``left`` seconds at ``step_time`` s/step; returns the new stop step."""
        t = self.cfg.train
        fit = self.step + int(left / max(step_time, 1e-6))
        if fit >= stop:
            return stop
        factor = fit / t.total_steps
        self.schedule.periods = [max(1, round(p * factor)) for p in self.schedule.periods]
        self.log(f"{step_time:.3f} s/step: {t.total_steps} steps do not fit in "
                 f"{t.max_minutes} min; training {fit} steps (schedule periods "
                 f"{self.schedule.periods})")
        t.total_steps = fit
        return fit

    def _mean_over_ranks(self, value: torch.Tensor) -> torch.Tensor:
        if not self.distributed:
            return value
        v = value.detach().clone().float()
        dist.all_reduce(v)
        return v / self.world

    def _agree_stop(self) -> bool:
        if not self.distributed:
            return self._stop_requested
        flag = torch.tensor([1.0 if self._stop_requested else 0.0], device=self.device)
        dist.all_reduce(flag)
        self._stop_requested = bool(flag.item() > 0)
        return self._stop_requested

    def _install_sigint(self) -> dict | None:
        """SIGINT/SIGTERM → finish the step, checkpoint, stop (a second one aborts)."""
        if not _in_main_thread():
            return None

        def handler(signum, frame):
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True
            self.log("\ninterrupt: finishing this step and writing a checkpoint "
                     "(press Ctrl-C again to abort)")

        return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    @staticmethod
    def _restore_sigint(old: dict | None) -> None:
        if old is not None and _in_main_thread():
            for sig, h in old.items():
                signal.signal(sig, h)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def train(cfg: Config, *, out_dir: str | Path | None = None, resume: bool = False,
          max_steps: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Build a :class:`Trainer`, optionally resume from its output folder, and fit."""
    trainer = Trainer(cfg, out_dir, progress=progress)
    if resume and not trainer.resume():
        trainer.log(f"no checkpoint in {trainer.ckpt_dir}; starting from scratch")
    try:
        return trainer.fit(max_steps)
    finally:
        if trainer.distributed and dist.is_initialized():
            dist.destroy_process_group()
