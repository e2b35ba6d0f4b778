"""The EDVR speed benchmark runs end to end on a tiny size and writes its JSON."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from _helpers import write_panning_clips

from stvsr.ops import native

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_edvr_speed_quick(tmp_path, capsys):
    bench = _load("edvr_speed")
    out = tmp_path / "speed.json"
    gt = write_panning_clips(tmp_path / "gt", 1, 3, (8, 12)) / "clip0"  # 3 frames, 32x48
    bench.main([
        "--quick", "--presets", "edvr-m", "--modes", "window", "cached", "--agree-impls",
        "--no-tune-malloc", "--agreement-clip", "none", "--frames-dir", str(tmp_path / "none"),
        "--gt-clip", str(gt), "--json", str(out),
    ])
    doc = json.loads(out.read_text())
    (vs_gt,) = doc["precision_vs_gt"]
    assert vs_gt["frames"] == 3 and abs(vs_gt["bf16_minus_fp32_db"]) < 0.05
    assert vs_gt["y_psnr_fp32_db"] > 0
    impls = {r["impl"] for r in doc["results"]}
    assert "pure" in impls and ("native" in impls) == native.available()
    assert doc["info"]["native_dcn"] == native.available()
    for r in doc["results"]:
        assert r["min_s"] > 0 and r["mode"] in ("window", "cached")
        if r["impl"] == "native":  # same network, same random offsets: same output
            tol = 1e-4 if r["precision"] == "fp32" else 5e-2
            assert r["max_abs_diff_vs_pure"] < tol
    assert "s/frame" in capsys.readouterr().out


def test_train_throughput_quick(tmp_path):
    """Both recipes (plain loader, frozen-store bank) run through the benchmark's loop."""
    import yaml

    bench = _load("train_throughput")
    root = write_panning_clips(tmp_path / "clips", 2, 9, (16, 24), step=4)
    tiny = {"num_feat": 8, "num_block": 1, "mid_feat": 8, "mid_block": 1}
    base = {
        "model": {"preset": "sfnet-s-untrained", "overrides": tiny},
        "data": {"type": "folder", "root": str(root), "mode": "stvsr", "num_frames": 3,
                 "lr_patch": 8, "batch_size": 2},
        "freeze": {"steps": 1000, "train_only": ["head"]},
        "schedule": {"periods": [10]},
        "train": {"total_steps": 10, "device": "cpu"},
    }
    plain, banked = tmp_path / "plain.yaml", tmp_path / "bank.yaml"
    plain.write_text(yaml.safe_dump(base))
    banked.write_text(yaml.safe_dump({**base, "bank": {"enabled": True, "pool": 2,
                                                        "max_inputs": 4}}))
    rows = [bench.measure(str(c), [], steps=2, warmup=1) for c in (plain, banked)]
    assert [r["bank"] for r in rows] == [False, True]
    for r in rows:
        assert r["samples_per_s"] > 0 and 0 <= r["data_wait_fraction"] <= 1


def test_learning_curve_samples_to_reach_an_absolute_goal(tmp_path):
    """Held-out scores exactly on ``a + b ln(samples)``: the fit recovers ``a, b`` and the
    samples that reach ``--goal`` (or ``--start-score + --target``) are ``exp((goal - a) / b)``."""
    import math

    bench = _load("learning_curve")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("data:\n  batch_size: 2\n")
    a, b = 20.0, 0.5
    rows = ["step,psnr_y_new"] + [f"{s},{a + b * math.log(2 * s)}" for s in (400, 800, 1600)]
    (run / "val_log.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "curve.json"
    bench.main([str(run), "--start-score", "24.0", "--goal", "26.0", "--json", str(out)])
    (curve,) = json.loads(out.read_text())["runs"]
    assert curve["samples"] == [800, 1600, 3200]
    assert math.isclose(curve["fit"]["a"], a) and math.isclose(curve["fit"]["b_per_ln_sample"], b)
    assert math.isclose(curve["samples_for_target"], math.exp((26.0 - a) / b), rel_tol=1e-9)
    bench.main([str(run), "--start-score", "24.0", "--target", "1.0", "--json", str(out)])
    (curve,) = json.loads(out.read_text())["runs"]
    assert math.isclose(curve["samples_for_target"], math.exp((25.0 - a) / b), rel_tol=1e-9)


def test_learning_curve_continued_runs_fit_as_one(tmp_path):
    """A run given as ``DIR@N`` continues after N samples; ``--together`` fits both runs'
    points as one curve (exact log-linear data: the fit is exact only with the offset)."""
    import math

    bench = _load("learning_curve")
    a, b = 20.0, 0.5
    for name, batch, steps, prior in (("r1", 2, (400, 800), 0), ("r2", 4, (200, 400), 1600)):
        run = tmp_path / name
        run.mkdir()
        (run / "config.yaml").write_text(f"data:\n  batch_size: {batch}\n")
        rows = ["step,psnr_y_new"] + [f"{s},{a + b * math.log(prior + batch * s)}"
                                      for s in steps]
        (run / "val_log.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "curve.json"
    bench.main([str(tmp_path / "r1"), f"{tmp_path / 'r2'}@1600", "--together", "--goal", "25",
                "--json", str(out)])
    (curve,) = json.loads(out.read_text())["runs"]
    assert curve["samples"] == [800, 1600, 2400, 3200]
    assert math.isclose(curve["fit"]["b_per_ln_sample"], b)
    assert math.isclose(curve["samples_for_target"], math.exp((25 - a) / b), rel_tol=1e-9)
