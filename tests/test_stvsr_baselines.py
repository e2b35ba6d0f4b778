"""ST-VSR baselines (stvsr-bicubic, stvsr-twostage) and the ST-VSR evaluation protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import stvsr
from stvsr.data.degradations import degrade
from stvsr.errors import DataError, StvsrError
from stvsr.eval import evaluate_spacetime, find_clips
from stvsr.eval.clips import read_names
from stvsr.eval.protocols import full_plan, windowed_plan
from stvsr.metrics import frame_metrics, to_uint8
from stvsr.models.stvsr_baselines import TwoStageSTVSR
from stvsr.ops.resize import imresize

pytestmark = pytest.mark.usefixtures("one_thread")


def test_bicubic_baseline_matches_direct_computation() -> None:
    torch.manual_seed(0)
    model = stvsr.create_model("stvsr-bicubic")
    assert (model.kind, model.scale, model.num_frames) == ("spacetime", 4, 0)
    x = torch.rand(2, 3, 3, 6, 5)
    out = model(x)
    assert out.shape == (2, 5, 3, 24, 20)
    for i in range(3):
        assert torch.allclose(out[:, 2 * i], imresize(x[:, i], 4.0), atol=1e-6)
    for i in range(2):
        mid = 0.5 * (imresize(x[:, i], 4.0) + imresize(x[:, i + 1], 4.0))
        assert torch.allclose(out[:, 2 * i + 1], mid, atol=1e-6)
    with pytest.raises(StvsrError):
        model(torch.rand(1, 1, 3, 6, 5))


def test_twostage_shapes_and_even_frames_are_basicvsr() -> None:
    torch.manual_seed(0)
    model = stvsr.create_model("stvsr-twostage", pretrained=False)  # random BasicVSR: fast
    assert (model.kind, model.scale, model.num_frames) == ("spacetime", 4, 0)
    x = torch.rand(1, 3, 3, 16, 12)
    with torch.no_grad():
        out = model(x)
        ref = model.vsr(x)
    assert out.shape == (1, 5, 3, 64, 48)
    assert torch.equal(out[:, 0::2], ref)
    assert torch.isfinite(out).all()
    hr_model = TwoStageSTVSR(model.vsr, flow_on="hr")
    with torch.no_grad():
        out_hr = hr_model(x)
    assert torch.equal(out_hr[:, 0::2], ref) and out_hr.shape == out.shape
    with pytest.raises(StvsrError):
        TwoStageSTVSR(model.vsr, flow_on="mid")


def _pattern(h: int, w: int, shift: float) -> torch.Tensor:
    """Smooth test image (1, 3, h, w) whose content is moved right by ``shift`` pixels."""
    ys = torch.arange(h, dtype=torch.float64).view(h, 1)
    xs = torch.arange(w, dtype=torch.float64).view(1, w) - shift
    chans = [0.5 + 0.4 * torch.sin(0.31 * xs + 0.17 * ys + p) for p in (0.0, 1.0, 2.0)]
    return torch.stack(chans).unsqueeze(0).float()


def test_twostage_interpolation_moves_content_half_way() -> None:
    model = TwoStageSTVSR(stvsr.create_model("basicvsr", weights=None))
    h, w = 20, 32
    i0, i1 = _pattern(h, w, 0.0), _pattern(h, w, 2.0)  # content moves right by 2
    f01 = torch.zeros(1, 2, h, w)
    f01[:, 0] = 2.0  # i0(p) = i1(p + 2)
    mid = model.interpolate(i0, i1, f01, -f01)
    want = _pattern(h, w, 1.0)
    assert torch.allclose(mid[..., 3:-3], want[..., 3:-3], atol=1e-4)
    plain = 0.5 * (i0 + i1)
    assert (plain - want)[..., 3:-3].abs().mean() > 10 * (mid - want)[..., 3:-3].abs().mean()


@pytest.mark.weights
def test_twostage_official_weights_even_frames(pull_weights) -> None:
    pull_weights("basicvsr-vimeo-bi")
    torch.manual_seed(0)
    model = stvsr.create_model("stvsr-twostage")
    ref_model = stvsr.create_model("basicvsr-vimeo-bi")
    x = torch.rand(1, 2, 3, 16, 16)
    with torch.no_grad():
        out = model(x)
        ref = ref_model(x)
    assert torch.equal(out[:, 0::2], ref)
    # static input: the in-between frame equals its (identical) neighbours up to flow noise
    still = _pattern(32, 32, 0.0).unsqueeze(1).repeat(1, 2, 1, 1, 1)
    with torch.no_grad():
        y = model(still)
    err = (y[:, 1] - y[:, 0]).abs().mean()
    assert err < 2e-3


# --------------------------------------------------------------------------- evaluation


def _fake_vid4(root: Path, lengths: dict[str, int], size: int = 32) -> Path:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (size + 20, size + 20, 3)).astype(np.float64)
    for name, n in lengths.items():
        folder = root / "GT" / name
        folder.mkdir(parents=True)
        for i in range(n):
            img = base[i: i + size, 2 * i % 20: 2 * i % 20 + size]
            Image.fromarray(img.astype(np.uint8)).save(folder / f"Frame {i + 1}.png")
    return root / "GT"


def test_plans() -> None:
    assert windowed_plan(9) == [(0, list(range(7))), (2, [5, 6])]
    assert windowed_plan(13) == [(0, list(range(7))), (6, [1, 2, 3, 4, 5, 6])]
    plan = windowed_plan(41)
    scored = sorted(a + j for a, js in plan for j in js)
    assert scored == list(range(41))  # every Vid4-calendar frame exactly once, tail included
    assert plan[-1][0] == 34
    assert full_plan(9) == ([0, 2, 4, 6, 8], None)
    assert full_plan(8) == ([0, 2, 4, 6], 7)
    with pytest.raises(StvsrError):
        windowed_plan(9, window=6)


@pytest.mark.parametrize("protocol", ["windowed", "full"])
def test_evaluate_scores_every_frame_once(tmp_path: Path, protocol: str) -> None:
    data = _fake_vid4(tmp_path, {"nine": 9, "eight": 8})
    model = stvsr.create_model("stvsr-bicubic")
    res = evaluate_spacetime(model, tmp_path, protocol=protocol, progress=False)
    assert res["task"] == "stvsr" and res["protocol"] == protocol
    assert res["model"] == "stvsr-bicubic"
    assert set(res["clips"]) == {"nine", "eight"}
    for name, n in (("nine", 9), ("eight", 8)):
        clip = res["clips"][name]
        frames = [r["frame"] for r in clip["per_frame"]]
        assert frames == list(range(n)) and clip["frames"] == n
        assert clip["frames_input"] + clip["frames_new"] == n
    kinds = {r["frame"]: r["kind"] for r in res["clips"]["eight"]["per_frame"]}
    assert kinds[7] == "input" and kinds[1] == "new"
    if protocol == "windowed":  # frame 7 of "nine" comes from the tail window [2, 9): position 5
        assert {r["frame"]: r["kind"] for r in res["clips"]["nine"]["per_frame"]}[7] == "new"
    # frame 7 of "nine": both protocols make it as the mean of the bicubic frames 6 and 8
    files = sorted((data / "nine").iterdir(), key=lambda p: int(p.stem.split()[1]))
    hr = [torch.from_numpy(np.array(Image.open(f))).permute(2, 0, 1).float() / 255 for f in files]
    lr6, lr8 = (degrade(hr[i][None], "bi", 4) for i in (6, 8))
    mid = 0.5 * (imresize(lr6, 4.0) + imresize(lr8, 4.0))
    want = frame_metrics(to_uint8(mid[0]), to_uint8(hr[7]))["psnr_y"]
    got = res["clips"]["nine"]["per_frame"][7]["psnr_y"]
    assert got == pytest.approx(want, abs=1e-9)
    m = res["mean"]
    for key in ("psnr_y", "ssim_y", "psnr_rgb", "psnr_y_input", "ssim_y_input", "psnr_y_new",
                "ssim_y_new"):
        assert np.isfinite(m[key])
    assert m["psnr_y"] == pytest.approx(np.mean([c["psnr_y"] for c in res["clips"].values()]))
    assert m["frames"] == 17


def test_evaluate_rejects_bad_input(tmp_path: Path) -> None:
    _fake_vid4(tmp_path, {"a": 9})
    with pytest.raises(StvsrError):
        evaluate_spacetime(stvsr.create_model("bicubic"), tmp_path, progress=False)
    with pytest.raises(StvsrError):
        evaluate_spacetime(stvsr.create_model("stvsr-bicubic"), tmp_path, protocol="half",
                           progress=False)
    bad = tmp_path / "list.txt"
    bad.write_text("nope\n")
    with pytest.raises(DataError):
        find_clips(tmp_path, read_names(bad))
    with pytest.raises(DataError):
        find_clips(tmp_path / "missing")


def test_evaluate_real_vimeo_septuplets(shared_dir: Path, tmp_path: Path) -> None:
    root = shared_dir / "data" / "Vimeo90K" / "septuplet_HR"
    if not (root / "sequences" / "00001" / "0003" / "im7.png").is_file():
        pytest.skip("shared Vimeo septuplets not found")
    lst = tmp_path / "sep.txt"
    lst.write_text("00001/0003\n00002/0005\n")
    clips = find_clips(root, read_names(lst))
    assert [c.name for c in clips] == ["00001/0003", "00002/0005"] and all(c.vimeo for c in clips)
    assert len(find_clips(root)) == 16
    res = evaluate_spacetime(stvsr.create_model("stvsr-bicubic"), root, list_file=lst,
                             progress=False)
    for clip in res["clips"].values():
        assert clip["frames"] == 7 and clip["frames_input"] == 4 and clip["frames_new"] == 3
        assert 20 < clip["psnr_y"] < 45
        assert clip["psnr_y_input"] > clip["psnr_y_new"]  # averaging blurs moving content
    assert res["mean"]["clips"] == 2 and res["mean"]["frames"] == 14
