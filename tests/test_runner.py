"""Chunked streaming inference must equal whole-clip inference where context suffices."""

from __future__ import annotations

import pytest
import torch
from _helpers import TemporalBox
from torch import nn

from stvsr.errors import StvsrError
from stvsr.infer.runner import restore_stream


class ToySpaceTime(nn.Module):
    """Toy space-time model: even outputs copy inputs, odd outputs average neighbours."""

    kind, scale, num_frames = "spacetime", 1, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n = x.shape[:2]
        out = torch.empty(b, 2 * n - 1, *x.shape[2:])
        out[:, 0::2] = x
        out[:, 1::2] = (x[:, :-1] + x[:, 1:]) / 2
        return out


def _frames(n: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(n)
    return [torch.rand(3, 4, 5, generator=g) for _ in range(n)]


@pytest.mark.parametrize("n,chunk,overlap", [(1, 4, 2), (7, 3, 2), (10, 4, 2), (10, 10, 0),
                                             (11, 2, 3), (9, 100, 2)])
def test_recurrent_chunks_equal_whole(n: int, chunk: int, overlap: int) -> None:
    model = TemporalBox()
    frames = _frames(n)
    whole = model(torch.stack(frames)[None])[0]
    out = list(restore_stream(model, iter(frames), chunk=chunk, overlap=overlap))
    assert len(out) == n
    torch.testing.assert_close(torch.stack(out), whole, rtol=0, atol=1e-6)


def test_recurrent_short_context_differs() -> None:
    """With less context than the receptive field, chunk borders are visible (test can fail)."""
    model = TemporalBox()
    frames = _frames(10)
    whole = model(torch.stack(frames)[None])[0]
    out = torch.stack(list(restore_stream(model, iter(frames), chunk=3, overlap=0)))
    assert (out - whole).abs().max() > 1e-3


@pytest.mark.parametrize("n,chunk,overlap", [(2, 1, 0), (5, 2, 1), (8, 3, 0), (9, 4, 2)])
def test_spacetime_chunks_give_every_frame_once(n: int, chunk: int, overlap: int) -> None:
    model = ToySpaceTime()
    frames = _frames(n)
    whole = model(torch.stack(frames)[None])[0]
    out = list(restore_stream(model, iter(frames), chunk=chunk, overlap=overlap))
    assert len(out) == 2 * n - 1
    torch.testing.assert_close(torch.stack(out), whole, rtol=0, atol=1e-6)


def test_empty_stream_is_a_clear_error() -> None:
    with pytest.raises(StvsrError, match="no frames"):
        list(restore_stream(TemporalBox(), iter([])))


def test_bad_precision_is_a_clear_error() -> None:
    with pytest.raises(StvsrError, match="precision"):
        list(restore_stream(TemporalBox(), iter(_frames(2)), precision="fp8"))
