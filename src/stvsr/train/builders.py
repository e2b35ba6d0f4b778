"""What a training run is made of, built from a :class:`~stvsr.train.config.Config`.

The model (a preset with its overrides, initialised as ``model.init`` / ``init_mode`` say), the
dataset, the optimizer, the learning-rate schedule, the pixel loss and the fp16 grad scaler.
Registered weights used as ``model.init`` must have been pulled (``stvsr weights pull``):
nothing is downloaded here.
"""

from __future__ import annotations

import contextlib
import fnmatch
import sys
from pathlib import Path

import torch
from torch import nn

from stvsr.errors import CheckpointError
from stvsr.train.config import Config, ConfigError
from stvsr.train.losses import PixelLoss
from stvsr.train.schedule import LRSchedule

__all__ = ["MODE_OF_KIND", "build_dataset", "build_loss", "build_model", "build_optimizer",
           "build_scaler", "build_schedule", "data_mode", "init_delta_base", "param_groups",
           "param_matches", "resolve_init_weights"]

MODE_OF_KIND = {"window": "svsr", "recurrent": "sequence", "spacetime": "stvsr"}


def resolve_init_weights(ref: str) -> Path:
    """``model.init``: an existing file, or a registered weights name (its verified cached
    file; a missing one is a one-line error naming ``stvsr weights pull NAME``)."""
    from stvsr.registry import list_weights, weights_file

    if Path(ref).exists():
        return Path(ref)
    if ref in list_weights():
        return weights_file(ref)
    raise ConfigError(f"model.init {ref!r} is neither a file nor a registered weights name")


def init_delta_base(ref: str) -> str:
    """The official weights a BasicVSR run starting from ``model.init`` = ``ref`` ships its
    difference against: ``ref`` itself when it names official weights, else the base that a
    shipped difference file records (a run that continues ``basicvsr-compressed-bd`` ships
    against ``basicvsr-vimeo-bd``, as that preset did)."""
    from stvsr import weights as wlib

    with contextlib.suppress(ConfigError):
        return wlib.delta_base_of(resolve_init_weights(ref)) or ref
    return ref


def build_model(cfg: Config, log=print) -> nn.Module:
    """The preset with its overrides, initialised as ``model.init`` / ``init_mode`` say."""
    from stvsr import create_model
    from stvsr import weights as wlib

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
        path = resolve_init_weights(cfg.model.init)
        mode = cfg.model.init_mode
        if mode == "strict":
            base = wlib.delta_base_of(path)
            if base is not None and hasattr(model, "delta_base"):
                model.delta_base = base  # a shipped fine-tune continues from its own base
            wlib.load_weights(model, path)
            log(f"init: loaded {path} (strict)" + (f", a difference to {base}" if base else ""))
        else:
            state = wlib.read_checkpoint(path)
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
        frames_spanned,
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
        clips = folder_clips(d.root)  # one folder, or several (corpora trained on together)

    if d.skip_small and d.lr_patch is not None:
        clips = _large_enough(clips, d.lr_patch * d.scale)
    if d.skip_short:
        clips = _long_enough(clips, frames_spanned(mode, d.num_frames, min(d.intervals)))

    def rng(v):
        return None if v is None else tuple(v)

    chain = "+" in d.degradation or ":" in d.degradation or "|" in d.degradation
    deg = DegradationSpec(kind="bi" if chain else d.degradation, scale=d.scale,
                          blur_sigma=rng(d.blur_sigma), noise_sigma=rng(d.noise_sigma),
                          jpeg_quality=rng(d.jpeg_quality), h264_crf=rng(d.h264_crf),
                          prob=d.extra_prob, chain=d.degradation if chain else None)
    return VideoClipDataset(clips, mode=mode, num_frames=d.num_frames, lr_patch=d.lr_patch,
                            scale=d.scale, degradation=deg, intervals=d.intervals, flip=d.flip,
                            transpose=d.transpose, reverse=d.reverse, repeat=d.repeat,
                            seed=cfg.train.seed, target=d.target, variants=d.variants,
                            variants_dir=d.variants_dir)


def _large_enough(clips: list, size: int) -> list:
    """The clips whose frames are at least ``size`` pixels on both sides (frame files are
    measured from their first image's header; video files are kept)."""
    from PIL import Image

    kept = []
    for clip in clips:
        if clip.frames:
            with Image.open(clip.frames[0]) as im:
                if min(im.size) < size:
                    continue
        kept.append(clip)
    if not kept:
        raise ConfigError(f"no clip has frames of at least {size} px; lower data.lr_patch")
    if len(kept) < len(clips):
        print(f"data: left out {len(clips) - len(kept)} clips smaller than the HR patch {size}")
    return kept


def _long_enough(clips: list, frames: int) -> list:
    """The clips with at least ``frames`` frame files (video files are kept)."""
    kept = [c for c in clips if not c.frames or len(c.frames) >= frames]
    if not kept:
        raise ConfigError(f"no clip has {frames} frames; lower data.num_frames or intervals")
    if len(kept) < len(clips):
        print(f"data: left out {len(clips) - len(kept)} clips shorter than {frames} frames")
    return kept


def data_mode(cfg: Config, model: nn.Module) -> str:
    """The dataset sampling mode for ``model`` (``data.mode`` or the one its kind implies),
    after checking that ``cfg.data`` fits the model."""
    kind = model.kind
    mode = cfg.data.mode if cfg.data.mode != "auto" else MODE_OF_KIND[kind]
    if MODE_OF_KIND[kind] != mode:
        raise ConfigError(f"data.mode {mode} does not fit a {kind} model "
                          f"(use {MODE_OF_KIND[kind]} or auto)")
    if kind == "window" and cfg.data.num_frames != model.num_frames:
        raise ConfigError(f"data.num_frames is {cfg.data.num_frames} but the model takes "
                          f"{model.num_frames} frames")
    if cfg.data.target == "clean_lr":
        if int(model.scale) != 1:
            raise ConfigError(f"data.target clean_lr trains a same-size model; this one has "
                              f"scale {model.scale}")
    elif int(model.scale) != cfg.data.scale:
        raise ConfigError(f"data.scale {cfg.data.scale} != model scale {model.scale}")
    return mode


def param_matches(name: str, patterns: list[str]) -> bool:
    """Whether parameter ``name`` matches one of ``patterns``: the name itself, a prefix of it
    up to a dot (``spynet`` matches ``spynet.basic_module.0.conv.weight``), or a glob."""
    return any(name == p or name.startswith(p + ".") or fnmatch.fnmatchcase(name, p)
               for p in patterns)


def param_groups(module: nn.Module, lr: float, lr_mult: dict[str, float]) -> list[dict]:
    """``module``'s parameters as optimizer groups: first those matching no key of ``lr_mult``
    at ``lr``, then one group per key (the first key a name matches wins) at ``lr × mult``.
    Empty groups are dropped; group 0 is always the base rate, which the schedule reports."""
    buckets: dict[str | None, list[nn.Parameter]] = {None: [], **{k: [] for k in lr_mult}}
    for name, p in module.named_parameters():
        key = next((k for k in lr_mult if param_matches(name, [k])), None)
        buckets[key].append(p)
    groups = [{"params": buckets[None], "lr": lr}]
    groups += [{"params": ps, "lr": lr * lr_mult[k], "name": k}
               for k, ps in buckets.items() if k is not None and ps]
    return groups


def build_optimizer(cfg: Config, module: nn.Module) -> torch.optim.Optimizer:
    """Adam or AdamW over all of ``module``'s parameters (frozen ones get no gradient);
    ``optim.lr_mult`` gives matching parameters their own multiple of ``optim.lr``."""
    o = cfg.optim
    opt_cls = torch.optim.AdamW if o.type == "adamw" else torch.optim.Adam
    params = param_groups(module, o.lr, o.lr_mult) if o.lr_mult else module.parameters()
    return opt_cls(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps,
                   weight_decay=o.weight_decay)


def build_schedule(cfg: Config, optimizer: torch.optim.Optimizer) -> LRSchedule:
    s = cfg.schedule
    return LRSchedule(optimizer, kind=s.type, periods=s.periods,
                      restart_weights=s.restart_weights, eta_min=s.eta_min,
                      warmup_steps=s.warmup_steps)


def build_scaler(cfg: Config):
    """A CUDA grad scaler for fp16 training, else ``None``."""
    return torch.amp.GradScaler("cuda") if cfg.train.precision == "fp16" else None


def build_loss(cfg: Config) -> PixelLoss:
    return PixelLoss(cfg.loss.type, cfg.loss.eps, cfg.loss.reduction)
