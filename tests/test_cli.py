"""The `stvsr` command-line contract: eval JSON/table/figures, weights, errors as one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stvsr.cli import main


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_eval_bicubic_contract(vid4_dir: Path, tmp_path: Path, capsys) -> None:
    out_json = tmp_path / "res.json"
    code, out, _ = _run(capsys, "eval", "--model", "bicubic", "--data", str(vid4_dir / "GT"),
                        "--degradation", "bi", "--clips", "walk,city", "--max-frames", "3",
                        "--json", str(out_json), "--quiet")
    assert code == 0
    res = json.loads(out_json.read_text())
    assert res["model"] == "bicubic" and res["degradation"] == "bi"
    assert set(res["clips"]) == {"walk", "city"}
    for clip in res["clips"].values():
        assert {"psnr_y", "ssim_y", "psnr_rgb", "frames"} <= set(clip)
        assert clip["frames"] == 3
        # the model *is* bicubic here, so its curve equals the bicubic reference curve
        assert clip["psnr_y"] == pytest.approx(clip["bicubic_psnr_y"], abs=1e-9)
    means = [res["clips"][c]["psnr_y"] for c in ("walk", "city")]
    assert res["mean"]["psnr_y"] == pytest.approx(np.mean(means))  # mean of clip means
    assert {"psnr_y", "ssim_y", "psnr_rgb"} <= set(res["mean"])
    assert "walk" in out and "mean" in out  # the table
    figs = tmp_path / "res_figures"
    assert (figs / "psnr_per_frame.png").is_file()
    assert (figs / "walk_crop.png").is_file() and (figs / "city_crop.png").is_file()


def test_eval_reproduces_basicvsr_bd_on_walk(vid4_dir: Path, pull_weights, capsys,
                                             tmp_path: Path) -> None:
    """evaluation.md: official BD weights on the first 8 walk frames give 30.86 dB (BD)."""
    pull_weights("basicvsr-vimeo-bd")
    out_json = tmp_path / "walk.json"
    code, _, _ = _run(capsys, "eval", "--model", "basicvsr-vimeo-bd", "--data",
                      str(vid4_dir / "GT"), "--clips", "walk", "--max-frames", "8",
                      "--degradation", "bd", "--json", str(out_json), "--quiet")
    assert code == 0
    res = json.loads(out_json.read_text())
    assert res["clips"]["walk"]["psnr_y"] == pytest.approx(30.86, abs=0.05)
    assert res["clips"]["walk"]["psnr_y"] > res["clips"]["walk"]["bicubic_psnr_y"] + 3


def test_eval_missing_folder_is_one_line(capsys, tmp_path: Path) -> None:
    code, _, err = _run(capsys, "eval", "--model", "bicubic", "--data",
                        str(tmp_path / "nope"), "--quiet")
    assert code == 2
    assert err.startswith("error:") and err.count("\n") == 1 and "does not exist" in err


@pytest.fixture
def tiny_gt(tmp_path: Path) -> Path:
    """A Vid4-like ``GT`` folder made here (clip ``walk``, 3 frames of 32×32): the error paths
    need no ``../shared``."""
    from stvsr.data.video import write_image

    rng = np.random.default_rng(0)
    clip = tmp_path / "GT" / "walk"
    clip.mkdir(parents=True)
    for k in range(3):
        write_image(clip / f"{k:03d}.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    return tmp_path / "GT"


def test_eval_unknown_model_and_degradation(capsys, tiny_gt: Path) -> None:
    code, _, err = _run(capsys, "eval", "--model", "no-such-model", "--data", str(tiny_gt))
    assert code == 2 and "unknown model" in err and err.count("\n") == 1
    code, _, err = _run(capsys, "eval", "--model", "bicubic", "--data", str(tiny_gt),
                        "--degradation", "blurry", "--quiet", "--max-frames", "1",
                        "--clips", "walk")
    assert code == 2 and err.startswith("error:") and err.count("\n") == 1


def test_wrong_checkpoint_is_one_line(capsys, tmp_path: Path, tiny_gt: Path) -> None:
    import torch

    bad = tmp_path / "edvr_like.pth"
    torch.save({"params": {"conv_first.weight": torch.zeros(64, 3, 3, 3)}}, bad)
    code, _, err = _run(capsys, "eval", "--model", "basicvsr", "--weights", str(bad),
                        "--data", str(tiny_gt))
    assert code == 2 and err.count("\n") == 1 and "does not fit" in err
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x80\x02not a checkpoint at all")
    code, _, err = _run(capsys, "eval", "--model", "basicvsr", "--weights", str(corrupt),
                        "--data", str(tiny_gt))
    assert code == 2 and err.count("\n") == 1 and "cannot read checkpoint" in err


def test_models_and_weights_list(capsys) -> None:
    code, out, _ = _run(capsys, "models")
    assert code == 0
    for name in ("basicvsr-vimeo-bi", "basicvsr-vimeo-bd", "basicvsr-reds4", "edvr-m",
                 "sfnet-s", "stvsr-bicubic", "stvsr-twostage", "bicubic"):
        assert name in out
    code, out, _ = _run(capsys, "weights", "list")
    assert code == 0 and "BasicVSR_Vimeo90K_BIx4-2a29695a.pth" in out


def test_stvsr_eval_on_vimeo_septuplets(shared_dir: Path, tmp_path: Path, capsys) -> None:
    seq = shared_dir / "data" / "Vimeo90K" / "septuplet_HR" / "sequences"
    lst = tmp_path / "list.txt"
    lst.write_text("00002/0001\n00002/0003\n")
    out_json = tmp_path / "st.json"
    code, out, _ = _run(capsys, "eval", "--model", "stvsr-bicubic", "--task", "stvsr",
                        "--data", str(seq), "--list-file", str(lst), "--json", str(out_json),
                        "--quiet")
    assert code == 0
    res = json.loads(out_json.read_text())
    assert len(res["clips"]) == 2
    for clip in res["clips"].values():
        assert clip["frames"] == 7
    m = res["mean"]
    assert m["psnr_y_input"] > m["psnr_y_new"]  # averaging neighbours is worse than bicubic
    assert "psnr_y_new" in out
