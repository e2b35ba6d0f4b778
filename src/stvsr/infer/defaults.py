"""Defaults shared by the CLI, the engine and the demo."""

# The model `stvsr upscale` uses when none is named. BasicVSR trained on REDS (real 720p footage,
# bicubic x4) until the space-time default `sfnet-s` ships with trained weights.
DEFAULT_MODEL = "basicvsr-reds4"
