"""Defaults shared by the CLI, the engine and the demo."""

# The model `stvsr upscale` and `stvsr demo` use when none is named: the shipped space-time
# model (x4 space, x2 frame rate; `--fps-factor 1` keeps the rate).
DEFAULT_MODEL = "sfnet-s"

# The model `stvsr upscale --scale 1` uses when none is named: frame interpolation only, at any
# rational `--fps-factor` (Practical-RIFE 3.9).
INTERPOLATION_MODEL = "rife"
