"""Inference: streaming video engine, sliding windows, tiling."""
