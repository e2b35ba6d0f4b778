"""Degradation chains as text and real video codecs: parsing, determinism, whole-clip coding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stvsr.data.chain import parse_chain
from stvsr.data.codecs import CodecSettings, encode_clip
from stvsr.data.datasets import DegradationSpec, VideoClipDataset, folder_clips
from stvsr.data.degradations import degrade
from stvsr.data.video import write_image
from stvsr.errors import StvsrError
from stvsr.frames import frames_to_tensor, to_uint8


def _clip(n: int = 6, h: int = 96, w: int = 128, seed: int = 0) -> torch.Tensor:
    """A textured HR clip panning 3 px per frame: (n, 3, h, w) in [0, 1]."""
    rng = np.random.default_rng(seed)
    big = rng.random((3, h // 8 + 1, (w + 3 * n) // 8 + 1))
    base = torch.nn.functional.interpolate(torch.from_numpy(big)[None], scale_factor=8,
                                           mode="bicubic", align_corners=False)[0]
    base = (base + 0.02 * torch.from_numpy(rng.random(base.shape))).clamp(0, 1)
    return torch.stack([base[:, :h, 3 * t: 3 * t + w] for t in range(n)]).float()


def _write_clip(folder, frames: np.ndarray) -> None:
    folder.mkdir(parents=True)
    for i, f in enumerate(frames):
        write_image(folder / f"{i:03d}.png", f)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a.double() - b.double()) ** 2).mean()))


@pytest.mark.parametrize("text", [
    "h264:crf=25", "bi+bd", "bi+blur:sigma=1", "noise:sigma=0.1+bi", "bi+h264:foo=3",
    "bi+h264:crf=30-20", "bi+vp9:crf=3", "bi:prob=0.5", "bi+mpeg4:crf=20", "bi|h264",
    "bi+h264:pix_fmt=rgb24", "bi+mpeg2:q=4,pix_fmt=yuv444p",
])
def test_bad_chains_are_one_line_errors(text: str) -> None:
    with pytest.raises(StvsrError) as info:
        chain = parse_chain(text)
        chain.apply(_clip(2, 32, 32), np.random.default_rng(0))
    assert "\n" not in str(info.value)


def test_protocol_chain_is_bd_then_one_x264_stream() -> None:
    hr = _clip()
    lr = parse_chain("bd+h264:crf=25,preset=medium,pix_fmt=yuv444p,fps=10").apply(
        hr, np.random.default_rng(0))
    clean = degrade(hr, "bd", 4)
    settings = CodecSettings("h264", crf=25, preset="medium", pix_fmt="yuv444p", fps=10)
    direct = frames_to_tensor(encode_clip(to_uint8(clean), settings))
    assert torch.equal(lr, direct)
    assert not torch.equal(lr, clean)
    # one stream, not frame by frame: frames after the first are predicted from earlier ones
    alone = frames_to_tensor(encode_clip(to_uint8(clean[3:4]), settings))
    assert not torch.equal(lr[3:4], alone)


def test_quality_follows_the_rate_and_lossless_is_near_exact() -> None:
    clean = degrade(_clip(), "bi", 4)
    rng = np.random.default_rng(0)
    scores = [_psnr(parse_chain(f"bi+h264:crf={c}").apply(_clip(), rng), clean)
              for c in (15, 28, 40)]
    assert scores[0] > scores[1] > scores[2]
    lossless = parse_chain("bi+h264:qp=0,pix_fmt=yuv444p".replace("qp", "q")).apply(_clip(), rng)
    # only the RGB <-> limited-range YUV round trip is left
    assert (lossless - clean).abs().max() <= 3 / 255
    for codec in ("h265:crf=28", "mpeg2:q=6", "mpeg4:b=200k"):
        out = parse_chain(f"bi+{codec}").apply(_clip(), rng)
        assert out.shape == clean.shape and 12 < _psnr(out, clean) < 50


def test_odd_sizes_and_leading_dims() -> None:
    hr = _clip(4, 92, 124)  # LR 23x31: odd, padded for 4:2:0 and cropped back
    lr = parse_chain("bi+h264:crf=20").apply(hr[None], np.random.default_rng(0))
    assert lr.shape == (1, 4, 3, 23, 31)
    assert torch.equal(lr, (lr * 255).round() / 255)


def test_draws_are_per_clip_and_deterministic_per_seed() -> None:
    chain = parse_chain("bi|bd+noise:sigma=0-0.02,prob=0.5+h264:crf=15-40,pix_fmt=yuv420p|yuv444p")
    hr = _clip(4, 64, 64)
    a = chain.apply(hr, np.random.default_rng(7))
    b = chain.apply(hr, np.random.default_rng(7))
    assert torch.equal(a, b)
    outs = {chain.apply(hr, np.random.default_rng(s)).sum().item() for s in range(6)}
    assert len(outs) > 3  # the settings vary with the seed
    stage = chain.stages[2]
    draws = [stage.draw(np.random.default_rng(s))[1] for s in range(200)]
    crfs = {d["crf"] for d in draws}
    assert min(crfs) == 15 and max(crfs) == 40 and all(float(c).is_integer() for c in crfs)
    assert {d["pix_fmt"] for d in draws} == {"yuv420p", "yuv444p"}


def test_split_gives_the_clean_lr() -> None:
    hr = _clip(4, 64, 64)
    clean, coded = parse_chain("blur:sigma=0.8+bd+h264:crf=30").split(hr, np.random.default_rng(1))
    from stvsr.data.chain import gaussian_blur

    assert torch.equal(clean, degrade(gaussian_blur(hr, 0.8), "bd", 4))
    assert not torch.equal(clean, coded)


def test_old_fields_and_chain_text_agree() -> None:
    spec = DegradationSpec(kind="bd", noise_sigma=(0.01, 0.02), h264_crf=(20, 30), prob=0.5)
    assert spec.chain_text() == ("bd+noise:sigma=0.01-0.02,prob=0.5"
                                 "+h264:crf=20-30,preset=veryfast,prob=0.5")
    hr = _clip(4, 64, 64)
    same = DegradationSpec(chain=spec.chain_text())
    assert torch.equal(spec.apply(hr, np.random.default_rng(3)),
                       same.apply(hr, np.random.default_rng(3)))


def test_dataset_clean_lr_target(tmp_path) -> None:
    _write_clip(tmp_path / "c" / "clip", to_uint8(_clip(7, 96, 96)))
    spec = DegradationSpec(chain="bi+h264:crf=35")
    kw = dict(mode="sequence", num_frames=5, lr_patch=16, degradation=spec, seed=3)
    ds = VideoClipDataset(folder_clips(tmp_path / "c"), target="clean_lr", **kw)
    hr_ds = VideoClipDataset(folder_clips(tmp_path / "c"), **kw)
    item, hr_item = ds[0], hr_ds[0]
    assert item["gt"].shape == item["lr"].shape == (5, 3, 16, 16)
    assert torch.equal(item["lr"], hr_item["lr"])  # same draws, whichever the target
    assert torch.equal(item["gt"], degrade(hr_item["gt"], "bi", 4))
    assert not torch.equal(item["gt"], item["lr"])
    centre = VideoClipDataset(folder_clips(tmp_path / "c"), target="clean_lr",
                              **{**kw, "mode": "svsr"})[0]
    assert centre["gt"].shape == (3, 16, 16)


def test_whole_clip_variants(tmp_path) -> None:
    """Items crop from seeded whole-clip variants: deterministic, the codec saw whole frames."""
    clip = to_uint8(_clip(8, 96, 128))
    _write_clip(tmp_path / "c" / "clip", clip)
    spec = DegradationSpec(chain="bi+h264:crf=20-40")
    kw = dict(mode="sequence", num_frames=5, lr_patch=16, degradation=spec, seed=3, variants=2,
              target="clean_lr", flip=False, transpose=False)
    ds = VideoClipDataset(folder_clips(tmp_path / "c"), **kw)
    again = VideoClipDataset(folder_clips(tmp_path / "c"), **kw)
    items = [ds[i] for i in range(6)]
    for i, item in enumerate(items):
        assert torch.equal(item["lr"], again[i]["lr"]) and torch.equal(item["gt"], again[i]["gt"])
        assert item["lr"].shape == item["gt"].shape == (5, 3, 16, 16)
    # the LR of an item is a crop of one whole-clip encoding (not of an encoded crop)
    hr = frames_to_tensor(clip)
    wholes = [DegradationSpec(chain="bi+h264:crf=20-40").split(hr, rng)[1]
              for rng in (np.random.Generator(np.random.PCG64(np.random.SeedSequence(
                  [3, 7919, 0, v]))) for v in range(2))]
    lr = items[0]["lr"]
    found = any(torch.equal(lr, w[t:t + 5, :, y:y + 16, x:x + 16])
                for w in wholes for t in range(4) for y in range(9) for x in range(17))
    assert found
    with pytest.raises(Exception, match="variants"):
        VideoClipDataset(folder_clips(tmp_path / "c"), **{**kw, "mode": "stvsr", "num_frames": 3})


def test_whole_clip_variants_persist_in_a_store(tmp_path) -> None:
    """With ``variants_dir`` the variants are written once and read back unchanged, with no
    codec needed (how a GPU machine without PyAV trains on them); a store made for another
    degradation is refused."""
    _write_clip(tmp_path / "c" / "clip", to_uint8(_clip(8, 96, 128)))
    store = tmp_path / "variants"
    kw = dict(mode="sequence", num_frames=5, lr_patch=16, seed=3, variants=2,
              variants_dir=store, flip=False, transpose=False)
    spec = DegradationSpec(chain="bi+h264:crf=20-40")
    made = VideoClipDataset(folder_clips(tmp_path / "c"), degradation=spec, **kw)
    items = [made[i] for i in range(4)]
    assert sorted(p.name for p in (store / "clip").iterdir()) == ["v0.npz", "v1.npz"]

    def no_codec(*_a, **_k):
        raise AssertionError("the stored variant was made again")

    spec_again = DegradationSpec(chain="bi+h264:crf=20-40")
    spec_again.split = no_codec  # type: ignore[method-assign]
    read = VideoClipDataset(folder_clips(tmp_path / "c"), degradation=spec_again, **kw)
    for i, item in enumerate(items):
        again = read[i]
        assert torch.equal(item["lr"], again["lr"]) and torch.equal(item["gt"], again["gt"])
    other = VideoClipDataset(folder_clips(tmp_path / "c"),
                             degradation=DegradationSpec(chain="bi+h264:crf=30"), **kw)
    with pytest.raises(StvsrError, match="was made for"):
        other[0]
    with pytest.raises(StvsrError, match="variants > 0"):
        VideoClipDataset(folder_clips(tmp_path / "c"), degradation=spec,
                         **{**kw, "variants": 0})
