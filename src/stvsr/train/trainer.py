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
"""

from __future__ import annotations

import contextlib
import copy
import csv
import fnmatch
import json
import math
import os
import random
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.utils.data import DataLoader, Sampler

from stvsr.errors import CheckpointError, StvsrError
from stvsr.train.config import Config, ConfigError, config_to_dict
from stvsr.train.losses import PixelLoss, compute_loss
from stvsr.train.schedule import LRSchedule

__all__ = ["StepSampler", "Trainer", "build_dataset", "build_model", "train"]

_MODE_OF_KIND = {"window": "svsr", "recurrent": "sequence", "spacetime": "stvsr"}


# --------------------------------------------------------------------------- building


def _resolve_weights(ref: str) -> Path:
    from stvsr import weights as wreg

    if Path(ref).exists():
        return Path(ref)
    if ref in wreg.list_weights():
        return wreg.pull(ref)
    raise ConfigError(f"model.init {ref!r} is neither a file nor a registered weights name")


def build_model(cfg: Config, log=print) -> nn.Module:
    """The preset with its overrides, initialised as ``model.init`` / ``init_mode`` say."""
    from stvsr import create_model
    from stvsr import weights as wreg

    try:
        model = create_model(cfg.model.preset, weights=None, **cfg.model.overrides)
    except TypeError as exc:
        raise ConfigError(f"model.overrides do not fit {cfg.model.preset!r}: {exc}") from None
    if cfg.model.init_mode == "pretrained":
        fn = getattr(sys.modules[type(model).__module__], "init_pretrained", None)
        if fn is None:
            raise ConfigError(f"{cfg.model.preset} has no pretrained parts to start from; use "
                              "init_mode strict, partial or basicvsr with model.init")
        done = fn(model)
        log(f"init: {len(done)}/{len(model.state_dict())} tensors from the official weights "
            "of the pretrained parts")
        model.pretrained = True
        model.weights_source = "pretrained parts"
    elif cfg.model.init:
        path = _resolve_weights(cfg.model.init)
        mode = cfg.model.init_mode
        if mode == "strict":
            wreg.load_weights(model, path)
            log(f"init: loaded {path} (strict)")
        else:
            state = wreg.read_checkpoint(path)
            if mode == "basicvsr":
                fn = getattr(sys.modules[type(model).__module__], "init_from_basicvsr", None)
                if fn is None:
                    raise ConfigError(f"{cfg.model.preset} has no BasicVSR warm start; use "
                                      "init_mode partial or strict")
                done = fn(model, state)
            else:
                convert = getattr(model, "convert_state_dict", None)
                if convert is not None:
                    with contextlib.suppress(Exception):
                        state = convert(state)
                own = model.state_dict()
                fit = {k: v for k, v in state.items()
                       if k in own and tuple(v.shape) == tuple(own[k].shape)}
                model.load_state_dict({**own, **{k: v.to(own[k].dtype) for k, v in fit.items()}})
                done = sorted(fit)
            if not done:
                raise CheckpointError(f"{path}: no tensor fits {cfg.model.preset}; wrong init?")
            log(f"init: {len(done)}/{len(model.state_dict())} tensors from {path} ({mode})")
        model.pretrained = True
        model.weights_source = str(path)
    model.train()
    return model


def build_dataset(cfg: Config, mode: str):
    """The training dataset of ``cfg.data`` sampled in ``mode``."""
    from stvsr.data.datasets import (
        DegradationSpec,
        VideoClipDataset,
        folder_clips,
        reds_clips,
        vimeo_septuplet_clips,
    )

    d = cfg.data
    if d.type == "vimeo":
        clips = vimeo_septuplet_clips(d.root, d.list_file)
    elif d.type == "reds":
        clips = reds_clips(d.root, d.split, lr=d.use_stored_lr and d.degradation == "bi",
                           scale=d.scale)
    else:
        clips = folder_clips(d.root)

    def rng(v):
        return None if v is None else tuple(v)

    deg = DegradationSpec(kind=d.degradation, scale=d.scale, blur_sigma=rng(d.blur_sigma),
                          noise_sigma=rng(d.noise_sigma), jpeg_quality=rng(d.jpeg_quality),
                          h264_crf=rng(d.h264_crf), prob=d.extra_prob)
    return VideoClipDataset(clips, mode=mode, num_frames=d.num_frames, lr_patch=d.lr_patch,
                            scale=d.scale, degradation=deg, intervals=d.intervals, flip=d.flip,
                            transpose=d.transpose, reverse=d.reverse, repeat=d.repeat,
                            seed=cfg.train.seed)


class StepSampler(Sampler[int]):
    """Resumable sampler that splits each *global* batch over DDP ranks.

    Epoch ``e`` visits ``randperm(n)`` seeded by ``(seed, e)`` (several permutations chained
    when ``n`` is smaller than the global batch ``B``), in ``len // B`` whole batches; rank
    ``r`` of ``R`` takes positions ``[bB + rB/R, bB + (r+1)B/R)`` of batch ``b``. So the union
    over ranks of a batch is the single-process batch, and ``start_batch`` skips batches
    already trained on.
    """

    def __init__(self, n: int, global_batch: int, *, rank: int = 0, world: int = 1,
                 seed: int = 0) -> None:
        if global_batch % world:
            raise ConfigError(f"data.batch_size {global_batch} must be divisible by the "
                              f"{world} processes")
        self.n, self.batch, self.rank, self.world, self.seed = n, global_batch, rank, world, seed
        self.per_rank = global_batch // world
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    @property
    def batches_per_epoch(self) -> int:
        return max(1, math.ceil(self.batch / self.n)) * self.n // self.batch

    def _order(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        reps = max(1, math.ceil(self.batch / self.n))
        return torch.cat([torch.randperm(self.n, generator=g) for _ in range(reps)])

    def __iter__(self) -> Iterator[int]:
        order = self._order().tolist()
        for b in range(self.start_batch, self.batches_per_epoch):
            lo = b * self.batch + self.rank * self.per_rank
            yield from order[lo: lo + self.per_rank]

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch - self.start_batch) * self.per_rank


def _matches(name: str, patterns: list[str]) -> bool:
    return any(name == p or name.startswith(p + ".") or fnmatch.fnmatchcase(name, p)
               for p in patterns)


# --------------------------------------------------------------------------- trainer


class Trainer:
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
        self._seed_everything(t.seed)
        self.module = build_model(cfg, log=self.log).to(self.device)
        self.kind = self.module.kind
        mode = cfg.data.mode if cfg.data.mode != "auto" else _MODE_OF_KIND[self.kind]
        if _MODE_OF_KIND[self.kind] != mode:
            raise ConfigError(f"data.mode {mode} does not fit a {self.kind} model "
                              f"(use {_MODE_OF_KIND[self.kind]} or auto)")
        if self.kind == "window" and cfg.data.num_frames != self.module.num_frames:
            raise ConfigError(f"data.num_frames is {cfg.data.num_frames} but the model takes "
                              f"{self.module.num_frames} frames")
        if int(self.module.scale) != cfg.data.scale:
            raise ConfigError(f"data.scale {cfg.data.scale} != model scale {self.module.scale}")
        self.dataset = build_dataset(cfg, mode)
        self.sampler = StepSampler(len(self.dataset), cfg.data.batch_size, rank=self.rank,
                                   world=self.world, seed=t.seed)
        self.ema = None
        if t.ema_decay > 0:
            self.ema = copy.deepcopy(self.module).eval()
            for p in self.ema.parameters():
                p.requires_grad_(False)
        o = cfg.optim
        opt_cls = torch.optim.AdamW if o.type == "adamw" else torch.optim.Adam
        self.optimizer = opt_cls(self.module.parameters(), lr=o.lr, betas=tuple(o.betas),
                                 eps=o.eps, weight_decay=o.weight_decay)
        s = cfg.schedule
        self.schedule = LRSchedule(self.optimizer, kind=s.type, periods=s.periods,
                                   restart_weights=s.restart_weights, eta_min=s.eta_min,
                                   warmup_steps=s.warmup_steps)
        self.scaler = None
        if t.precision == "fp16":
            self.scaler = torch.amp.GradScaler("cuda")
        self.pixel = PixelLoss(cfg.loss.type, cfg.loss.eps, cfg.loss.reduction)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.history: list[tuple[int, float]] = []
        self._frozen: bool | None = None
        self.model: nn.Module = self.module
        self._apply_freeze()
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
                train = (not f.train_only or _matches(name, f.train_only)) and not _matches(
                    name, f.patterns)
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
    def make_loader(self) -> DataLoader:
        """A loader for the current ``(epoch, batch_in_epoch)`` position."""
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

    @torch.no_grad()
    def _update_ema(self) -> None:
        d = self.cfg.train.ema_decay
        for pe, p in zip(self.ema.parameters(), self.module.parameters()):
            if p.requires_grad:
                pe.mul_(d).add_(p.detach(), alpha=1 - d)
            else:  # frozen: the average of a constant is exactly that constant (no drift)
                pe.copy_(p.detach())
        for be, b in zip(self.ema.buffers(), self.module.buffers()):
            be.copy_(b)

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
                        from stvsr.evaluate_st import evaluate_spacetime

                        result = evaluate_spacetime(net, v.data, protocol=v.protocol,
                                                    degradation=v.degradation,
                                                    max_frames=v.max_frames,
                                                    device=str(self.device), progress=False)
                    else:
                        from stvsr.evaluate import evaluate_svsr

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

    # ---- checkpoints --------------------------------------------------------------------
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


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _plain(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".part")
    write(str(tmp))
    os.replace(tmp, path)


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
