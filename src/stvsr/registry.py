"""Model presets registered by name, with their pretrained-weight metadata.

A *preset* is a name (``"basicvsr-vimeo-bi"``, ``"edvr-m"``, ``"sfnet-s"``) bound to a builder,
its keyword arguments and, optionally, the name of a registered weights file
(:mod:`stvsr.weights`). :func:`create_model` builds a preset, loads its weights strictly and
returns the network in eval mode.

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
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from stvsr.errors import StvsrError

KINDS = ("recurrent", "window", "spacetime")


@dataclass(frozen=True)
class ModelSpec:
    """A registered preset."""

    name: str
    builder: Callable[..., nn.Module]
    kwargs: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None
    description: str = ""


_MODELS: dict[str, ModelSpec] = {}
_LOADED = False


def register_model(
    name: str,
    builder: Callable[..., nn.Module],
    *,
    weights: str | None = None,
    description: str = "",
    **kwargs: Any,
) -> ModelSpec:
    """Register preset ``name``: ``builder(**kwargs)`` builds it, ``weights`` names its file."""
    if name in _MODELS:
        raise ValueError(f"model preset {name!r} is registered twice")
    spec = ModelSpec(name, builder, dict(kwargs), weights, description)
    _MODELS[name] = spec
    return spec


def _load_all() -> None:
    """Import every module of :mod:`stvsr.models` so their presets register themselves."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import stvsr.models as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"stvsr.models.{info.name}")


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


def create_model(
    name: str,
    weights: str | Path | None = "default",
    *,
    device: str | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build preset ``name`` in eval mode.

    Args:
        name: a preset from :func:`list_models`.
        weights: ``"default"`` loads the preset's registered weights (fetched and verified on
            first use, see :func:`stvsr.weights.pull`) or leaves it randomly initialised when it
            has none; ``None`` forces random initialisation; a path loads that checkpoint; the
            name of a registered weights file loads that file. Loading is always strict.
        device: where to put the network (default: CPU).
        overrides: keyword arguments that replace the preset's builder arguments.

    Returns:
        The network, with ``preset``, ``pretrained`` and ``weights_source`` attributes set.
    """
    from stvsr import weights as wreg

    spec = get_spec(name)
    model = spec.builder(**{**spec.kwargs, **overrides})
    for attr in ("kind", "scale"):
        if not hasattr(model, attr):
            raise TypeError(f"builder of {name!r} returned a module without {attr!r}")
    if model.kind not in KINDS:
        raise TypeError(f"{name!r} has unknown kind {model.kind!r}")
    model.preset = name
    source: str | None = None
    if weights == "default":
        if spec.weights is not None:
            source = str(wreg.pull(spec.weights))
    elif weights is not None:
        text = str(weights)
        if text in wreg.list_weights() and not Path(text).exists():
            source = str(wreg.pull(text))
        else:
            source = text
    if source is not None:
        wreg.load_weights(model, source)
    # Composite presets (e.g. stvsr-twostage) load their parts' weights in their builder.
    parts = [m.weights_source for m in model.modules()
             if m is not model and getattr(m, "pretrained", False)]
    model.pretrained = source is not None or (weights == "default" and bool(parts))
    model.weights_source = source if source is not None else (" + ".join(parts) or None)
    model.eval()
    if device is not None:
        model.to(device)
    return model


def is_untrained(model: nn.Module) -> bool:
    """Whether ``model`` has parameters but no loaded weights (a preset built with random
    initialisation); modules not built by :func:`create_model` count as trained."""
    return not getattr(model, "pretrained", True) and any(True for _ in model.parameters())
