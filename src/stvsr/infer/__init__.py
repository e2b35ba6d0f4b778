"""Inference: streaming video engine, sliding windows, tiling, and :func:`optimize` (the one
step that turns a plain network into its fast inference form)."""

from stvsr.infer.optimize import optimize

__all__ = ["optimize"]
