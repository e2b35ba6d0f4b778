"""Sliding-window video inference (mirrored ends, feature caching, streaming) and tiling."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.nn import functional as F  # noqa: N812

from stvsr.errors import StvsrError
from stvsr.infer.sliding import SlidingWindowRunner, mirror_index, window_indices
from stvsr.infer.tiling import is_oom, tile_starts, tiled_forward
from stvsr.models.edvr import EDVR
from stvsr.registry import create_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def video() -> torch.Tensor:
    return torch.rand(7, 3, 12, 16, generator=torch.Generator().manual_seed(2))


# --------------------------------------------------------------------------- indices


def test_mirror_index_reflection() -> None:
    t = 10
    assert [mirror_index(j, t) for j in (-1, -2, 0, 9, 10, 11)] == [1, 2, 0, 9, 8, 7]
    assert window_indices(0, t, 5) == [2, 1, 0, 1, 2]
    assert window_indices(1, t, 5) == [1, 0, 1, 2, 3]
    assert window_indices(9, t, 5) == [7, 8, 9, 8, 7]
    assert window_indices(4, t, 7) == [1, 2, 3, 4, 5, 6, 7]
    assert window_indices(0, 1, 5) == [0] * 5
    assert window_indices(0, 2, 5) == [0, 1, 0, 1, 0]
    assert all(0 <= mirror_index(j, 3) < 3 for j in range(-20, 20))


# --------------------------------------------------------------------------- sliding


class _Counter:
    """Wraps ``model.extract_features`` and counts the frames it is given."""

    def __init__(self, model: EDVR) -> None:
        self.model, self.frames = model, 0
        self.orig = model.extract_features

    def __enter__(self) -> _Counter:
        def counted(frames: torch.Tensor, *a, **k):
            self.frames += frames.shape[1]
            return self.orig(frames, *a, **k)

        self.model.extract_features = counted  # instance attribute shadows the method
        return self

    def __exit__(self, *exc) -> None:
        del self.model.extract_features


def test_cached_equals_naive_and_counts(edvr_m: EDVR, video: torch.Tensor) -> None:
    t, n = video.shape[0], edvr_m.num_frames
    with _Counter(edvr_m) as c:
        cached = SlidingWindowRunner(edvr_m, cache=True).run_all(video)
    assert c.frames == t
    with _Counter(edvr_m) as c:
        naive = SlidingWindowRunner(edvr_m, cache=False).run_all(video)
    assert c.frames == t * n
    assert cached.shape == (t, 3, 48, 64)
    torch.testing.assert_close(cached, naive, atol=1e-5, rtol=0)
    # ends use mirrored windows: frame 0 <- [2, 1, 0, 1, 2], frame 6 <- [4, 5, 6, 5, 4]
    with torch.no_grad():
        first = edvr_m(video[[2, 1, 0, 1, 2]][None])[0]
        last = edvr_m(video[[4, 5, 6, 5, 4]][None])[0]
    torch.testing.assert_close(cached[0], first, atol=1e-5, rtol=0)
    torch.testing.assert_close(cached[-1], last, atol=1e-5, rtol=0)


def test_streaming_bounded_buffer(edvr_m: EDVR, video: torch.Tensor) -> None:
    pulled: list[int] = []

    def frames():
        for i, f in enumerate(video):
            pulled.append(i)
            yield f

    runner = SlidingWindowRunner(edvr_m, cache=True)
    it = runner.run(frames())
    first = next(it)  # needs frames 0..2 only (window [2, 1, 0, 1, 2])
    assert torch.is_grad_enabled()  # no_grad inside the generator does not leak to the caller
    assert first.shape == (3, 48, 64) and len(pulled) == 3
    rest = list(it)
    assert len(rest) == video.shape[0] - 1
    assert runner.max_buffered <= 2 * 2 + 2


@pytest.mark.parametrize("t", [1, 2])
def test_very_short_videos(edvr_m: EDVR, video: torch.Tensor, t: int) -> None:
    out = SlidingWindowRunner(edvr_m).run_all(video[:t])
    assert out.shape == (t, 3, 48, 64) and torch.isfinite(out).all()


def test_runner_rejects_non_window_models_and_empty_video(edvr_m: EDVR) -> None:
    with pytest.raises(StvsrError, match="window"):
        SlidingWindowRunner(create_model("bicubic", weights=None))
    with pytest.raises(StvsrError, match="no frames"):
        SlidingWindowRunner(edvr_m).run_all(iter([]))


def test_two_stage_runs_naively() -> None:
    torch.manual_seed(0)
    model = create_model("edvr-two-stage", weights=None)
    runner = SlidingWindowRunner(model, cache=True)
    assert not runner.cached and runner.num_frames == 9
    out = runner.run_all(torch.rand(3, 3, 8, 8))
    assert out.shape == (3, 3, 32, 32)


# --------------------------------------------------------------------------- tiling


def _local_window_fn(x: torch.Tensor) -> torch.Tensor:
    """A 'window model' whose output pixel depends only on its own input pixel: x4 nearest."""
    c = x[:, x.shape[1] // 2]
    return F.interpolate(c * 0.5 + x.mean(1) * 0.5, scale_factor=4, mode="nearest")


def _local_video_fn(x: torch.Tensor) -> torch.Tensor:
    """5-D output like a recurrent model: ``(B, T, 3, 2h, 2w)``."""
    return x.repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2) ** 2


def test_tile_starts_cover() -> None:
    assert tile_starts(40, 24, 8) == [0, 16]
    assert tile_starts(56, 24, 8) == [0, 16, 32]
    assert tile_starts(20, 24, 8) == [0]
    for length in range(24, 90):
        s = tile_starts(length, 24, 8)
        assert s[0] == 0 and s[-1] == length - 24
        assert all(b - a <= 16 for a, b in zip(s, s[1:]))


def test_blending_is_exact_for_local_functions() -> None:
    x = torch.rand(2, 5, 3, 40, 56)
    torch.testing.assert_close(
        tiled_forward(_local_window_fn, x, scale=4, tile=24, overlap=8), _local_window_fn(x),
        atol=1e-6, rtol=0,
    )
    y = tiled_forward(_local_video_fn, x, scale=2, tile=16, overlap=8)
    assert y.shape == (2, 5, 3, 80, 112)
    torch.testing.assert_close(y, _local_video_fn(x), atol=1e-6, rtol=0)
    # untiled when the tile covers the frame, or tile=None
    torch.testing.assert_close(tiled_forward(_local_window_fn, x, scale=4, tile=None),
                               _local_window_fn(x))


def test_tiled_edvr_matches_untiled() -> None:
    """EDVR-M, default random init, 5x3x40x56, tile 24, overlap 8.

    EDVR's theoretical receptive field is far larger than the tile, so tiles cannot be exact;
    with this init the error of a tile cut decays to ~1e-5 at 8 LR pixels from the cut and
    ~1e-6 at 12. The window's zero-weight margin (overlap // 4 = 2 px) keeps the worst
    (outermost) tile pixels out of the blend; measured max diff ≈ 5e-5.
    """
    torch.manual_seed(0)
    model = create_model("edvr-m", weights=None)
    x = torch.rand(1, 5, 3, 40, 56, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ref = model(x)
        y = tiled_forward(model, x, scale=4, tile=24, overlap=8)
    diff = (y - ref).abs().max().item()
    print(f"tiled vs untiled EDVR-M max abs diff: {diff:.2e}")
    assert y.shape == ref.shape and diff < 1e-4


def test_oom_halves_tile_and_still_matches() -> None:
    x = torch.rand(1, 5, 3, 72, 96)
    sizes: list[tuple[int, int]] = []

    def fn(t: torch.Tensor) -> torch.Tensor:
        sizes.append(tuple(t.shape[-2:]))
        if max(t.shape[-2:]) > 48:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return _local_window_fn(t)

    with pytest.warns(RuntimeWarning, match="out of memory") as rec:
        y = tiled_forward(fn, x, scale=4, tile=None, overlap=8)
    assert len([w for w in rec if "out of memory" in str(w.message)]) == 1
    assert sizes[0] == (72, 96) and set(sizes[1:]) == {(48, 48)}  # 96 -> 48, one retry
    torch.testing.assert_close(y, _local_window_fn(x), atol=1e-6, rtol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y2 = tiled_forward(fn, x, scale=4, tile=96, overlap=8)
    torch.testing.assert_close(y2, y, atol=0, rtol=0)


def test_oom_below_min_tile_is_a_clear_error() -> None:
    def fn(t: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: out of memory")

    assert is_oom(RuntimeError("CUDA out of memory")) and not is_oom(RuntimeError("shape"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(StvsrError, match="out of memory"):
            tiled_forward(fn, torch.rand(1, 5, 3, 64, 64), scale=4, tile=64, overlap=8)

    def bad(t: torch.Tensor) -> torch.Tensor:
        raise ValueError("not an OOM")

    with pytest.raises(ValueError):
        tiled_forward(bad, torch.rand(1, 5, 3, 64, 64), scale=4, tile=32)


class _OomAbove(torch.nn.Module):
    """Recurrent ×2 stand-in (nearest-neighbour upscale, exact under tiling) that raises
    :class:`torch.OutOfMemoryError` on inputs wider or taller than ``limit`` and records the
    ``(h, w)`` of every call."""

    kind, scale, num_frames = "recurrent", 2, 0

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.calls: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(x.shape[-2:]))
        if max(x.shape[-2:]) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        return x.repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)


def test_oom_halved_tile_is_kept_for_later_chunks() -> None:
    """Issue 12: after an OOM the halved tile is used for the rest of the stream; only the
    first chunk ever tries the full size, and the halving is reported once."""
    from stvsr.infer.runner import restore_stream
    from stvsr.infer.tiling import TileSize

    frames = torch.rand(7, 3, 64, 80, generator=torch.Generator().manual_seed(3))
    model = _OomAbove(limit=40)
    with pytest.warns(RuntimeWarning, match="out of memory") as rec:
        out = list(restore_stream(model, frames.unbind(0), chunk=2, overlap=1, tile=80,
                                  tile_overlap=8))
    assert len([w for w in rec if "out of memory" in str(w.message)]) == 1
    assert "40-pixel tiles for the rest of the run" in str(rec[0].message)
    big = [s for s in model.calls if max(s) > 40]
    assert big == [(64, 80)]  # one failed try, in the first chunk; 80 -> 40 at once
    assert model.calls[0] == (64, 80) and all(max(s) <= 40 for s in model.calls[1:])
    ref = frames.repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)
    torch.testing.assert_close(torch.stack(out), ref, atol=1e-6, rtol=0)

    # a TileSize shared by several streams (the segments of a video) keeps the halved size
    # across them, and reports through ``log``
    model.calls.clear()
    lines: list[str] = []
    shared = TileSize(80, log=lines.append)
    for _ in range(2):
        list(restore_stream(model, frames.unbind(0), chunk=3, overlap=1, tile=shared,
                            tile_overlap=8))
    assert shared.tile == 40 and shared.halvings == 1 and len(lines) == 1
    assert [s for s in model.calls if max(s) > 40] == [(64, 80)]


def test_upscale_reports_the_halved_tile_once(tmp_path) -> None:
    """End to end: several segments, one OOM, one log line, every later call at the small
    tile."""
    from stvsr.data.video import write_image
    from stvsr.infer.engine import upscale_video

    src = tmp_path / "frames"
    src.mkdir()
    g = torch.Generator().manual_seed(5)
    for k in range(6):
        write_image(src / f"{k:03d}.png",
                    (torch.rand(48, 64, 3, generator=g) * 255).to(torch.uint8).numpy())
    model = _OomAbove(limit=32)
    lines: list[str] = []
    s = upscale_video(src, tmp_path / "out", model=model, tile=64, tile_overlap=8, chunk=2,
                      overlap=1, segment_frames=2, scene_detect=False, progress="none",
                      log=lines.append)
    assert s["segments"] == 3 and s["frames_out"] == 6
    oom_lines = [ln for ln in lines if "out of memory" in ln]
    assert len(oom_lines) == 1 and "32-pixel tiles" in oom_lines[0]
    big = [c for c in model.calls if max(c) > 32]
    assert big == [(48, 64)]
