"""stvsr: video super-resolution, frame interpolation and space-time super-resolution."""

from __future__ import annotations

from stvsr.errors import StvsrError
from stvsr.registry import create_model, get_spec, list_models

__version__ = "0.1.0"

__all__ = ["StvsrError", "create_model", "get_spec", "list_models", "__version__"]
