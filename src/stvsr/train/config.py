"""Training configuration: YAML → validated dataclasses (unknown keys are errors).

A config file has the sections ``model``, ``data``, ``val``, ``loss``, ``optim``, ``schedule``,
``freeze`` and ``train`` (every key optional except ``model.preset`` and ``data.root``); see
``configs/*.yaml`` for complete examples. :func:`load_config` reads a file, applies
``--set key.sub=value`` overrides and validates; every problem is one :class:`ConfigError` line
naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stvsr.errors import StvsrError

__all__ = [
    "BankConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "FreezeConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "ValConfig",
    "config_from_dict",
    "config_to_dict",
    "load_config",
]


class ConfigError(StvsrError):
    """A training config that cannot be used as written."""


@dataclass
class ModelConfig:
    """``preset`` (a registered model), builder ``overrides`` and initial weights.

    ``init``: a checkpoint path or registered weights name to start from. ``init_mode``:
    ``strict`` (every key must fit), ``partial`` (load the keys whose names and shapes match,
    as BasicSR's ``strict_load: false`` — used to start EDVR-M from EDVR-M-woTSA) or
    ``basicvsr`` (SFNet warm start from BasicVSR weights via ``init_from_basicvsr``) or
    ``pretrained`` (no ``init`` file: the model module's ``init_pretrained`` loads the official
    weights of its frozen parts, as sfnet-s v2's BasicVSR and RIFE). ``init_state``: continue
    the training state kept beside the ``init`` file (:mod:`stvsr.train.state`): ``auto`` (when
    it is there and pairs with the file), a path, or ``None`` (a fresh optimizer).
    """

    preset: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    init: str | None = None
    init_mode: str = "strict"
    init_state: str | None = None


@dataclass
class DataConfig:
    """Training data. ``type``: ``vimeo`` | ``reds`` | ``folder``; ``root``: the dataset
    folder (``folder`` type: or a list of folders, whose clips are used together);
    ``mode``: ``auto`` (from the model's kind), ``svsr``, ``sequence`` or ``stvsr``;
    ``batch_size`` is the *global* batch (split evenly over DDP processes).
    Ranges (``blur_sigma``...) are ``[low, high]``.
    ``degradation``: ``bi``, ``bd``, ``bd-duf`` or a chain (:mod:`stvsr.data.chain`, e.g.
    ``bi|bd+h264:crf=15-38,prob=0.9``; then the range fields must be unset). ``target``: ``hr``
    or ``clean_lr`` (the LR clip before noise and compression: for same-size models that
    remove compression, scale 1). ``variants``: ``K > 0`` degrades each clip's whole frames in
    ``K`` seeded variants once and crops items from them (a codec sees whole frames);
    ``variants_dir`` keeps them on disk, to be reused, or carried to a machine without PyAV.
    ``skip_small``: leave out clips smaller than the HR patch (else an error).
    ``skip_short``: leave out clips with fewer frames than one item spans at the shortest of
    ``intervals`` (else an error when such a clip is drawn)."""

    type: str = "folder"
    root: str | list[str] = ""
    list_file: str | None = None
    split: str = "train"
    use_stored_lr: bool = True
    mode: str = "auto"
    num_frames: int = 5
    lr_patch: int | None = 64
    scale: int = 4
    degradation: str = "bi"
    blur_sigma: list[float] | None = None
    noise_sigma: list[float] | None = None
    jpeg_quality: list[int] | None = None
    h264_crf: list[int] | None = None
    extra_prob: float = 1.0
    target: str = "hr"
    variants: int = 0
    variants_dir: str | None = None
    skip_small: bool = False
    skip_short: bool = False
    intervals: list[int] = field(default_factory=lambda: [1])
    flip: bool = True
    transpose: bool = True
    reverse: bool = False
    repeat: int = 1
    batch_size: int = 8
    num_workers: int = 0


@dataclass
class ValConfig:
    """Validation every ``every`` steps (0 = never) on ``data`` (a folder of HR clip folders),
    scored with :func:`stvsr.eval.evaluate_svsr` (``task: svsr``) or
    :func:`stvsr.eval.evaluate_spacetime` (``stvsr``). ``degradation``: a downscale or a chain
    (:mod:`stvsr.data.chain`, e.g. ``bi+h264:crf=28``), its draws seeded per clip as in
    ``stvsr eval``."""

    every: int = 0
    data: str | None = None
    task: str = "auto"
    degradation: str = "bi"
    max_frames: int | None = 7
    protocol: str = "windowed"
    use_ema: bool = True


@dataclass
class LossConfig:
    """Charbonnier (``sqrt(d² + eps²)``), L1 or MSE with ``mean`` or ``sum`` reduction;
    ``structure_weight`` adds the SFNet structure-image term (spacetime models only)."""

    type: str = "charbonnier"
    eps: float = 1e-3
    reduction: str = "mean"
    structure_weight: float = 0.0


@dataclass
class OptimConfig:
    """Adam(W) hyper-parameters. ``lr_mult``: parameter-name patterns (as in ``freeze``) and
    the multiple of ``lr`` they train at, e.g. ``{spynet: 0.125}`` for a flow network that
    should move slower than the rest (as BasicSR's ``flow_lr_mul``); the schedule scales all."""

    type: str = "adam"
    lr: float = 4e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    weight_decay: float = 0.0
    eps: float = 1e-8
    lr_mult: dict[str, float] = field(default_factory=dict)


@dataclass
class ScheduleConfig:
    """``cosine_restart`` (periods, restart_weights, eta_min) or ``constant``; linear warm-up
    over ``warmup_steps``."""

    type: str = "cosine_restart"
    periods: list[int] = field(default_factory=list)
    restart_weights: list[float] = field(default_factory=list)
    eta_min: float = 1e-7
    warmup_steps: int = 0


@dataclass
class FreezeConfig:
    """For the first ``steps`` steps train only the parameters matching ``train_only`` (glob
    patterns on parameter names, or plain prefixes) and freeze those matching ``patterns``."""

    steps: int = 0
    train_only: list[str] = field(default_factory=list)
    patterns: list[str] = field(default_factory=list)


@dataclass
class TrainConfig:
    """The loop: steps, seed, precision (``fp32`` | ``bf16`` | ``fp16``), device (``auto``).

    ``max_minutes``: a wall-time budget for this run (e.g. a short GPU window). Over steps
    10-60 the run measures its step time and, if ``total_steps`` would not fit, shrinks
    ``total_steps`` and the schedule's periods in proportion so the schedule completes in time;
    it stops at the budget in any case, with a checkpoint and the final model written.

    ``channels_last``: keep the model's 4-D weights channels-last (NHWC). oneDNN's convolutions
    run faster so on CPU, most in bf16; results agree with the default layout within float
    tolerance and checkpoints are written in the usual layout."""

    total_steps: int = 1000
    seed: int = 0
    precision: str = "fp32"
    device: str = "auto"
    grad_clip: float | None = None
    ema_decay: float = 0.0
    log_every: int = 10
    ckpt_every: int = 1000
    keep_checkpoints: int = 3
    threads: int | None = None
    max_minutes: float | None = None
    find_unused_parameters: bool = False
    channels_last: bool = False
    out_dir: str = "runs/train"


@dataclass
class BankConfig:
    """``bank``: train a frozen-store model's head on frozen outputs kept per whole sequence
    (:mod:`stvsr.train.store_bank`; sfnet-s only, single process)."""

    enabled: bool = False
    pool: int = 8
    refresh: int = 32
    max_inputs: int = 16


@dataclass
class Config:
    """A whole training config."""

    name: str = "run"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    val: ValConfig = field(default_factory=ValConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    freeze: FreezeConfig = field(default_factory=FreezeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    bank: BankConfig = field(default_factory=BankConfig)


# --------------------------------------------------------------------------- parsing


def _type_ok(value: Any, tp: Any) -> Any:
    """``value`` converted to ``tp`` (int → float allowed), or raise ``TypeError``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _type_ok(value, a)
            except TypeError:
                pass
        raise TypeError
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise TypeError
        return [_type_ok(v, inner) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise TypeError
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads "4e-4" as a string
            try:
                return float(value)
            except ValueError:
                raise TypeError from None
        raise TypeError
    if tp is str:
        if isinstance(value, str):
            return value
        raise TypeError
    raise TypeError


def _build(cls: type, data: Any, where: str, source: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {where or 'the file'} must be a mapping of keys, "
                          f"got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            raise ConfigError(f"{source}: unknown key {path!r}; known keys here: "
                              f"{', '.join(fields)}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, path, source)
            continue
        try:
            kwargs[key] = _type_ok(value, tp)
        except TypeError:
            name = getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
            raise ConfigError(f"{source}: {path} = {value!r} should be of type {name}") from None
    return cls(**kwargs)


_CHOICES: dict[str, tuple[str, ...]] = {
    "model.init_mode": ("strict", "partial", "basicvsr", "pretrained"),
    "data.type": ("vimeo", "reds", "folder"),
    "data.mode": ("auto", "svsr", "sequence", "stvsr"),
    "data.target": ("hr", "clean_lr"),
    "val.task": ("auto", "svsr", "stvsr"),
    "val.protocol": ("windowed", "full"),
    "loss.type": ("charbonnier", "l1", "mse"),
    "loss.reduction": ("mean", "sum"),
    "optim.type": ("adam", "adamw"),
    "schedule.type": ("cosine_restart", "constant"),
    "train.precision": ("fp32", "bf16", "fp16"),
}


def _validate_chain(d: DataConfig, v: ValConfig, fail: Callable[[str], None]) -> None:
    """``data.degradation`` and ``val.degradation`` are downscale names or chains that parse;
    a data chain carries its own extras, so the older range fields must then be unset."""
    from stvsr.data.chain import parse_chain

    try:
        parse_chain(v.degradation)
    except StvsrError as err:
        fail(f"val.degradation: {err}")
    try:
        chain = parse_chain(d.degradation)
    except StvsrError as err:
        fail(f"data.degradation: {err}")
        return
    ranges = [k for k in ("blur_sigma", "noise_sigma", "jpeg_quality", "h264_crf")
              if getattr(d, k) is not None]
    if len(chain.stages) > 1 and ranges:
        fail(f"data.degradation is a chain; put {ranges[0]} into it instead")


def _validate(cfg: Config, source: str) -> None:
    def fail(msg: str) -> None:
        raise ConfigError(f"{source}: {msg}")

    for path, choices in _CHOICES.items():
        sec, key = path.split(".")
        value = getattr(getattr(cfg, sec), key)
        if value not in choices:
            fail(f"{path} = {value!r}; choose one of: {', '.join(choices)}")
    if not cfg.model.preset:
        fail("model.preset is required (see `stvsr models`)")
    if not cfg.data.root:
        fail("data.root is required (a dataset folder)")
    if isinstance(cfg.data.root, list) and cfg.data.type != "folder":
        fail(f"data.root lists several folders, which only data.type folder takes "
             f"(got {cfg.data.type!r}); give one folder")
    d = cfg.data
    for key in ("num_frames", "scale", "batch_size", "repeat"):
        if getattr(d, key) < 1:
            fail(f"data.{key} must be >= 1")
    if d.lr_patch is not None and d.lr_patch < 1:
        fail("data.lr_patch must be >= 1 or null (whole frames)")
    if d.num_workers < 0 or d.variants < 0:
        fail("data.num_workers and data.variants must be >= 0")
    for key in ("blur_sigma", "noise_sigma", "jpeg_quality", "h264_crf"):
        rng = getattr(d, key)
        if rng is not None and (len(rng) != 2 or rng[0] > rng[1] or rng[0] < 0):
            fail(f"data.{key} must be [low, high] with 0 <= low <= high")
    _validate_chain(d, cfg.val, fail)
    if not 0 <= d.extra_prob <= 1:
        fail("data.extra_prob must lie in [0, 1]")
    o = cfg.optim
    if o.lr <= 0 or len(o.betas) != 2 or not all(0 <= b < 1 for b in o.betas):
        fail("optim.lr must be > 0 and optim.betas two numbers in [0, 1)")
    if any(not isinstance(m, (int, float)) or m < 0 for m in o.lr_mult.values()):
        fail("optim.lr_mult maps parameter patterns to multiples >= 0 of optim.lr")
    s = cfg.schedule
    if s.type == "cosine_restart":
        if not s.periods or any(p < 1 for p in s.periods):
            fail("schedule.periods must list positive step counts for cosine_restart")
        if s.restart_weights and len(s.restart_weights) != len(s.periods):
            fail(f"schedule.restart_weights has {len(s.restart_weights)} entries for "
                 f"{len(s.periods)} periods")
    if s.warmup_steps < 0 or s.eta_min < 0:
        fail("schedule.warmup_steps and schedule.eta_min must be >= 0")
    t = cfg.train
    if t.total_steps < 1 or t.log_every < 1 or t.ckpt_every < 1:
        fail("train.total_steps, train.log_every and train.ckpt_every must be >= 1")
    if not 0 <= t.ema_decay < 1:
        fail("train.ema_decay must lie in [0, 1) (0 = no EMA)")
    if t.grad_clip is not None and t.grad_clip <= 0:
        fail("train.grad_clip must be > 0 or null")
    if cfg.freeze.steps < 0 or (cfg.freeze.steps and not (cfg.freeze.train_only
                                                          or cfg.freeze.patterns)):
        fail("freeze.steps needs freeze.train_only or freeze.patterns")
    if cfg.val.every < 0 or (cfg.val.every and not cfg.val.data):
        fail("val.every > 0 needs val.data (a folder of HR clips)")


def _set_path(data: dict, dotted: str, value: Any, source: str) -> None:
    parts = dotted.split(".")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{source}: cannot set {dotted}: {p} is not a section")
    node[parts[-1]] = value


def config_from_dict(data: dict[str, Any], source: str = "config",
                     overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Validate ``data`` (after applying ``overrides`` such as ``"optim.lr=1e-4"``)."""
    data = yaml.safe_load(yaml.safe_dump(data or {}))  # deep copy, plain types
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, text = item.split("=", 1)
        _set_path(data, key.strip(), yaml.safe_load(text), source)
    cfg = _build(Config, data, "", source)
    _validate(cfg, source)
    return cfg


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read and validate YAML config ``path``. Relative ``data.root`` / ``val.data`` /
    ``model.init`` paths stay relative to the working directory."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: invalid YAML{where}") from None
    return config_from_dict(data or {}, str(path), overrides)


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain-dict form (for saving beside checkpoints)."""
    return dataclasses.asdict(cfg)
