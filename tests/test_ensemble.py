"""Self-ensemble (stvsr.infer.ensemble): transforms are undone exactly, variants are averaged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _helpers import randomize_params
from torch import nn

from stvsr.errors import StvsrError
from stvsr.infer.ensemble import DIHEDRAL, SelfEnsemble
from stvsr.registry import create_model


class _Asym(nn.Module):
    """A space-time model that is deliberately neither flip- nor time-symmetric: output
    ``2i`` = input ``i`` times a ramp across width plus a row index term; in-between outputs are
    ``0.3·left + 0.7·right``."""

    kind = "spacetime"
    scale = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c, h, w = x.shape
        ramp = torch.linspace(0.5, 1.5, w, dtype=x.dtype).view(1, 1, 1, 1, w)
        rows = torch.arange(h, dtype=x.dtype).view(1, 1, 1, h, 1) * 0.01
        y = x * ramp + rows
        outs = []
        for i in range(n):
            outs.append(y[:, i])
            if i + 1 < n:
                outs.append(0.3 * y[:, i] + 0.7 * y[:, i + 1])
        return torch.stack(outs, 1)


def _undo(y: torch.Tensor, fw: bool, fh: bool, tr: bool) -> torch.Tensor:
    if tr:
        y = y.transpose(-1, -2)
    if fh:
        y = y.flip(-2)
    return y.flip(-1) if fw else y


def _apply(x: torch.Tensor, fw: bool, fh: bool, tr: bool) -> torch.Tensor:
    if fw:
        x = x.flip(-1)
    if fh:
        x = x.flip(-2)
    return x.transpose(-1, -2) if tr else x


def test_dihedral_transforms_are_the_eight_distinct_symmetries():
    x = torch.arange(12.0).view(1, 1, 1, 3, 4)
    seen = {tuple(_apply(x, *t).flatten().tolist()) + (t[2],) for t in DIHEDRAL}
    assert len(seen) == 8
    for t in DIHEDRAL:
        assert torch.equal(_undo(_apply(x, *t), *t), x)


@pytest.mark.parametrize("k,temporal", [(2, False), (8, False), (4, True)])
def test_ensemble_is_the_mean_of_the_undone_variants(k, temporal):
    torch.manual_seed(0)
    x = torch.rand(1, 3, 3, 6, 6)
    net = _Asym()
    ens = SelfEnsemble(net, k, temporal)
    want = []
    for rev in ([False, True] if temporal else [False]):
        for t in DIHEDRAL[:k]:
            xi = x.flip(1) if rev else x
            y = _undo(net(_apply(xi, *t)), *t)
            want.append(y.flip(1) if rev else y)
    got = ens(x)
    assert got.shape == (1, 5, 3, 6, 6)
    assert torch.allclose(got, torch.stack(want).mean(0), atol=1e-6)
    # the model is asymmetric, so the ensemble really differs from one pass
    assert not torch.allclose(got, net(x), atol=1e-3)
    assert ens.variants == k * (2 if temporal else 1)


def test_ensemble_of_a_symmetric_model_changes_nothing():
    """stvsr-bicubic (MATLAB bicubic ×4 + frame averaging) is flip-, transpose- and
    time-symmetric, so its 8×2 ensemble equals one pass."""
    model = create_model("stvsr-bicubic").eval()
    torch.manual_seed(1)
    x = torch.rand(1, 3, 3, 8, 10, dtype=torch.float64)
    with torch.no_grad():
        one = model(x)
        wrapped = SelfEnsemble(model, 8, temporal=True)
        ens = wrapped(x)
    assert ens.shape == one.shape
    assert torch.allclose(ens.double(), one.double(), atol=1e-5)
    assert wrapped.scale == model.scale and wrapped.kind == "spacetime"


def test_bad_sizes_are_refused():
    with pytest.raises(StvsrError, match="1, 2, 4 or 8"):
        SelfEnsemble(_Asym(), 3)
    with pytest.raises(StvsrError, match="kind"):
        SelfEnsemble(nn.Identity(), 2)


def test_upscale_with_self_ensemble_writes_the_ensemble_frames(tmp_path):
    """`stvsr upscale --self-ensemble 4` runs the wrapped model through the same streaming path:
    the written frames are the rounded frames of the ensemble run directly."""
    from stvsr.data.video import read_image, write_image
    from stvsr.infer.engine import tensor_to_frame, upscale_video
    from stvsr.infer.ensemble import self_ensemble

    rng = np.random.default_rng(0)
    src = tmp_path / "in"
    src.mkdir()
    frames = [rng.integers(0, 256, (12, 16, 3), dtype=np.uint8) for _ in range(3)]
    for k, rgb in enumerate(frames):
        write_image(src / f"f{k}.png", rgb)
    out = tmp_path / "out"
    upscale_video(src, out, model=_Asym(), self_ensemble=4, progress=False,
                      scene_detect=False, log=lambda _: None)
    x = torch.stack([torch.from_numpy(f).permute(2, 0, 1).float() / 255 for f in frames])
    want = self_ensemble(_Asym(), 4)(x.unsqueeze(0))[0]
    files = sorted(out.glob("*.png"))
    assert len(files) == 5
    for k, f in enumerate(files):
        np.testing.assert_array_equal(read_image(f), tensor_to_frame(want[k]))


def test_self_ensemble_refuses_retiming(tmp_path):
    from stvsr.data.video import write_image
    from stvsr.infer.engine import upscale_video

    src = tmp_path / "in"
    src.mkdir()
    for k in range(3):
        write_image(src / f"f{k}.png", np.full((12, 16, 3), 40 * k, np.uint8))
    with pytest.raises(StvsrError, match="self-ensemble"):
        upscale_video(src, tmp_path / "out", model="rife", scale=1, fps_factor="5/2",
                      self_ensemble=2, weights=None, progress=False, log=lambda _: None)


def test_cli_sizes_put_time_reversal_first():
    from stvsr.infer.ensemble import self_ensemble

    net = _Asym()
    assert self_ensemble(net, 1) is net
    for n, k in ((2, 1), (4, 2), (8, 4), (16, 8)):
        ens = self_ensemble(net, n)
        assert (ens.k, ens.temporal, ens.variants) == (k, True, n)
    with pytest.raises(StvsrError, match="1, 2, 4, 8 or 16"):
        self_ensemble(net, 3)


def test_window_model_time_reversal_through_the_stream():
    """EDVR (a window model, mirrored clip ends) self-ensembled over time reversal and run
    through restore_stream equals the mean of the plain stream and the reversed stream of the
    reversed clip: the wrapper sees every window, not just the centre frame."""
    from stvsr.infer.ensemble import self_ensemble
    from stvsr.infer.runner import restore_stream

    torch.manual_seed(0)
    model = create_model("edvr-m", weights=None, num_feat=16, num_extract_block=1,
                         num_reconstruct_block=1, deformable_groups=2).eval()
    randomize_params(model)  # a fresh EDVR's output is close to time-symmetric
    frames = [torch.rand(3, 16, 16) for _ in range(6)]
    ens = torch.stack(list(restore_stream(self_ensemble(model, 2), frames)))
    fwd = torch.stack(list(restore_stream(model, frames)))
    bwd = torch.stack(list(restore_stream(model, frames[::-1]))).flip(0)
    assert ens.shape == fwd.shape == (6, 3, 64, 64)
    assert torch.allclose(ens, (fwd + bwd) / 2, atol=1e-5)
    assert not torch.allclose(ens, fwd, atol=1e-4)
