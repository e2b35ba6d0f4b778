"""``stvsr report``: eval JSON + upscale outputs -> one self-contained HTML page, checked in a
real headless Chromium (skipped, saying why, when no Chromium is installed)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from _browser import Browser, find_chromium

from stvsr.cli import main
from stvsr.data.images import write_image
from stvsr.eval.figures import report_frames


def _frames(n: int, h: int = 128, w: int = 128) -> list[np.ndarray]:
    """Smooth colours, a grid and a square moving right by 4 px per frame."""
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for t in range(n):
        img = np.stack([60 + 120 * xx / w, 90 + 80 * yy / h, 140 + 0 * xx], -1)
        img[(yy % 16 < 2) | (xx % 16 < 2)] = 30
        img[40:72, 20 + 4 * t:52 + 4 * t] = [240, 220, 40]
        out.append(img.astype(np.uint8))
    return out


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """A 3-frame 128x128 clip, S-VSR and ST-VSR eval results on it, and an upscaled video."""
    root = tmp_path_factory.mktemp("report")
    data = root / "data"
    for name in ("clipA",):
        for t, img in enumerate(_frames(3)):
            (data / name).mkdir(parents=True, exist_ok=True)
            write_image(data / name / f"{t:03d}.png", img)
    lr = root / "lr"
    lr.mkdir()
    for t, img in enumerate(_frames(3)):
        write_image(lr / f"{t:03d}.png", img[::4, ::4])
    svsr, st = root / "svsr.json", root / "st.json"
    assert main(["eval", "--model", "bicubic", "--data", str(data), "--json", str(svsr),
                 "--quiet"]) == 0
    assert main(["eval", "--model", "stvsr-bicubic", "--task", "stvsr", "--protocol", "full",
                 "--data", str(data), "--json", str(st), "--quiet"]) == 0
    video = root / "up.mp4"
    up_report = root / "upscale_report.html"
    assert main(["upscale", str(lr), str(video), "--model", "stvsr-bicubic", "--quiet",
                 "--preset", "ultrafast", "--report", str(up_report)]) == 0
    page = root / "report.html"
    assert main(["report", str(svsr), str(st), "--video", str(lr), str(video),
                 "-o", str(page)]) == 0
    return {"root": root, "svsr": svsr, "st": st, "lr": lr, "video": video, "page": page,
            "up_report": up_report}


def test_report_frames_spread() -> None:
    assert report_frames(7, 3) == [1, 3, 5]
    assert report_frames(3, 3) == [0, 1, 2]
    assert report_frames(100, 3) == [25, 50, 75]
    assert report_frames(0, 3) == [] and report_frames(5, 0) == []


def test_eval_json_has_what_the_report_needs(made) -> None:
    svsr = json.loads(made["svsr"].read_text())
    clip = svsr["clips"]["clipA"]
    # the older keys are still there (backwards compatible) ...
    assert {"psnr_y", "ssim_y", "bicubic_psnr_y", "per_frame_psnr_y", "frames"} <= set(clip)
    # ... and the new ones
    assert len(clip["per_frame_bicubic_psnr_y"]) == 3
    assert [Path(f).name for f in clip["frame_files"]] == ["000.png", "001.png", "002.png"]
    figs = Path(svsr["figures_dir"])
    assert sorted(clip["saved_frames"]) == ["0", "1", "2"]
    assert all((figs / p).is_file() for p in clip["saved_frames"].values())
    st = json.loads(made["st"].read_text())
    sclip = st["clips"]["clipA"]
    assert [r["kind"] for r in sclip["per_frame"]] == ["input", "new", "input"]
    assert sorted(sclip["saved_frames"]) == ["0", "1", "2"] and sclip["frame_files"]


def test_report_page_is_self_contained(made) -> None:
    page = made["page"].read_text()
    rows = re.findall(r'<tr(?: class="mean")? data-clip="([^"]+)" data-model="([^"]+)"', page)
    assert rows == [("clipA", "bicubic"), ("mean", "bicubic"), ("clipA", "stvsr-bicubic"),
                    ("mean", "stvsr-bicubic")]
    assert page.count('<svg class="chart"') == 2  # one chart per clip with per-frame scores
    assert "new frame" in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page and "<link" not in page
    images = json.loads(re.search(r'id="stvsr-images">(.*?)</script>', page, re.S).group(1))
    assert images and all(u.startswith("data:image/png;base64,") for u in images.values())
    # every viewer is at most the budget; the upscale hook wrote its own page
    assert page.count('<figure class="viewer"') <= 12
    up = made["up_report"].read_text()
    assert "up.mp4" in up and "new frame" in up and 'id="numbers-table"' not in up


def test_report_external_images(made, tmp_path: Path) -> None:
    page = tmp_path / "ext.html"
    assert main(["report", str(made["svsr"]), "-o", str(page), "--external", "--jpeg", "90",
                 "--max-frames", "1"]) == 0
    text = page.read_text()
    images = json.loads(re.search(r'id="stvsr-images">(.*?)</script>', text, re.S).group(1))
    assert images and all(u.startswith("ext_files/") and u.endswith(".jpg")
                          for u in images.values())
    assert all((tmp_path / u).is_file() for u in images.values())
    assert text.count('<figure class="viewer"') == 1


def test_report_errors_are_one_line(tmp_path: Path, capsys) -> None:
    assert main(["report", "-o", str(tmp_path / "r.html")]) == 2
    assert "nothing to report" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["report", str(bad), "-o", str(tmp_path / "r.html")]) == 2
    assert "not a stvsr eval result" in capsys.readouterr().err


def test_report_in_headless_chromium(made, tmp_path: Path) -> None:
    exe = find_chromium()
    if exe is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set STVSR_CHROMIUM): "
                    "the page was not checked in a browser")
    with Browser(exe, width=1280, height=900) as b:
        b.open(made["page"].resolve().as_uri())
        widths = b.js("""Promise.all([...document.images].map(i => i.complete ? 1 :
              new Promise(r => { i.onload = i.onerror = r; })))
            .then(() => [...document.images].map(i => i.naturalWidth))""")
        assert widths and all(w > 0 for w in widths), widths
        rows = b.js("[...document.querySelectorAll('#numbers-table tbody tr')]"
                    ".map(r => [r.dataset.clip, r.dataset.model])")
        assert rows == [["clipA", "bicubic"], ["mean", "bicubic"], ["clipA", "stvsr-bicubic"],
                        ["mean", "stvsr-bicubic"]]
        moved = b.js("""(() => {
            const f = document.querySelector('figure.viewer');
            const over = f.querySelector('.over'), s = f.querySelector('.slider');
            const stage = f.querySelector('.stage').getBoundingClientRect().width;
            const before = over.getBoundingClientRect().width;
            s.value = 20; s.dispatchEvent(new Event('input'));
            const after = over.getBoundingClientRect().width;
            return [before, after, stage]; })()""")
        before, after, stage = moved
        assert stage > 0 and abs(before - stage / 2) < 2 and abs(after - 0.2 * stage) < 2
        crops = b.js("""(() => {
            const f = document.querySelector('figure.viewer');
            const c = f.querySelector('.crop-img'), p0 = c.style.backgroundPosition;
            f.querySelector('.stage').dispatchEvent(new MouseEvent('click',
                {clientX: f.querySelector('.stage').getBoundingClientRect().left + 3,
                 clientY: f.querySelector('.stage').getBoundingClientRect().top + 3}));
            return [p0, c.style.backgroundPosition]; })()""")
        assert crops[0] != crops[1]  # clicking the frame moves the zoomed crops
        kinds = b.js("[...document.querySelectorAll('figure.viewer')].map(f => f.dataset.kind)")
        assert "new" in kinds and "input" in kinds
        assert b.js("document.querySelectorAll('svg.chart').length") == 2
        shot = b.screenshot(tmp_path / "report.png")
    assert shot.stat().st_size > 10_000
    keep = os.environ.get("STVSR_REPORT_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)


def test_coded_input_keeps_its_bicubic_for_the_report(tmp_path: Path) -> None:
    """A coded frame depends on the whole stream, so the eval saves the bicubic upscale of
    what it fed; for the bicubic model that is exactly its own output, and the report shows it
    (a recomputation from one frame would differ)."""
    from stvsr.data.images import read_image

    data = tmp_path / "data"
    (data / "clipA").mkdir(parents=True)
    for t, img in enumerate(_frames(3)):
        write_image(data / "clipA" / f"{t:03d}.png", img)
    res = tmp_path / "coded.json"
    assert main(["eval", "--model", "bicubic", "--data", str(data), "--degradation",
                 "bi+h264:crf=40", "--json", str(res), "--quiet"]) == 0
    result = json.loads(res.read_text())
    clip, figs = result["clips"]["clipA"], Path(result["figures_dir"])
    assert sorted(clip["saved_bicubic_frames"]) == sorted(clip["saved_frames"]) == ["0", "1", "2"]
    for i, rel in clip["saved_bicubic_frames"].items():
        assert np.array_equal(read_image(figs / rel), read_image(figs / clip["saved_frames"][i]))
    page = tmp_path / "r.html"
    assert main(["report", str(res), "-o", str(page), "--external"]) == 0
    assert page.read_text().count('<figure class="viewer"') >= 1
