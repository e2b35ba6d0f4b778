"""Model ledgers (train/ledger.py, `stvsr ledger`): a run's row comes from its output folder,
rows are numbered and appended, and a checkpoint ships only when held-out validation improves."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from _helpers import write_panning_clips

from stvsr.errors import StvsrError
from stvsr.train.command import best_validated_checkpoint, run_ledger
from stvsr.train.config import config_from_dict
from stvsr.train.ledger import FIELDS, append_row, decide, read_ledger, summarize_run
from stvsr.train.trainer import Trainer

TINY = {"num_feat": 8, "num_block": 1, "mid_feat": 8, "mid_block": 1}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("ledger")
    clips = write_panning_clips(base / "clips", 2, 9, (16, 24), step=4)
    val = write_panning_clips(base / "val", 1, 5, (16, 24), seed=5, step=4)
    cfg = config_from_dict({
        "name": "tiny_run",
        "model": {"preset": "sfnet-s-untrained", "overrides": TINY},
        "data": {"type": "folder", "root": str(clips), "mode": "stvsr", "num_frames": 3,
                 "lr_patch": 8, "batch_size": 2},
        "bank": {"enabled": True, "pool": 2, "max_inputs": 4},
        "freeze": {"steps": 1000, "train_only": ["head"]},
        "val": {"every": 2, "data": str(val), "task": "stvsr", "max_frames": 5},
        "schedule": {"periods": [6]},
        "train": {"total_steps": 6, "log_every": 2, "ckpt_every": 2, "ema_decay": 0.5,
                  "keep_checkpoints": 2, "device": "cpu"},
    })
    out = base / "run"
    Trainer(cfg, out, progress=False).fit()
    return out


def test_run_row_from_the_output_folder(run_dir: Path) -> None:
    row = summarize_run(run_dir)
    assert row["model"] == "sfnet-s-untrained" and row["config"] == "tiny_run"
    assert (row["start_step"], row["end_step"], row["batch"], row["samples"]) == (0, 6, 2, 12)
    curve = [c.split(":") for c in str(row["val_curve"]).split(";")]
    assert [int(s) for s, _ in curve] == [2, 4, 6]
    assert row["val_score"] == curve[-1][1] and float(row["minutes"]) >= 0


def test_best_validated_checkpoint_is_one_still_on_disk(run_dir: Path) -> None:
    step, score, path = best_validated_checkpoint(run_dir)
    assert step in (4, 6) and path.is_file()  # step 2 was pruned (keep_checkpoints: 2)
    scores = {int(s): float(v) for s, v in
              (c.split(":") for c in str(summarize_run(run_dir)["val_curve"]).split(";"))}
    assert score == pytest.approx(max(scores[4], scores[6]), abs=1e-3)


def test_rows_append_and_number(tmp_path: Path, run_dir: Path) -> None:
    ledger = tmp_path / "m-ledger.csv"
    assert read_ledger(ledger) == []
    a = append_row(ledger, {**summarize_run(run_dir), "shipped": "no"})
    b = append_row(ledger, {"model": "x", "shipped": "sha256 abc", "val_score": "30.5"})
    rows = read_ledger(ledger)
    assert [r["run"] for r in rows] == ["1", "2"] == [a["run"], b["run"]]
    assert list(rows[0]) == FIELDS
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(StvsrError, match="not a ledger"):
        read_ledger(tmp_path / "bad.csv")


def test_ships_only_when_held_out_improves() -> None:
    rows = [{"shipped": "sha256 a", "val_score": "33.000"}, {"shipped": "no", "val_score": "34"}]
    assert decide(rows, 33.2).ship
    assert not decide(rows, 33.0).ship and not decide(rows, 32.9).ship
    assert "does not beat the shipped 33.000" in decide(rows, 32.9).reason
    assert not decide(rows, None).ship
    assert decide([], 20.0).ship
    # --margin: a gain within it keeps the shipped file
    assert not decide(rows, 33.011, margin=0.02).ship
    assert "by more than 0.02" in decide(rows, 33.011, margin=0.02).reason
    assert decide(rows, 33.03, margin=0.02).ship


def test_cli_appends_a_row_without_shipping(tmp_path: Path, run_dir: Path, capsys) -> None:
    ledger = tmp_path / "l.csv"
    run_ledger(argparse.Namespace(run_dir=str(run_dir), ledger=str(ledger), ship=False,
                                  force=False, note="tiny"))
    (row,) = read_ledger(ledger)
    assert row["shipped"] == "no" and row["note"] == "tiny" and row["end_step"] == "6"
    assert "run 1, steps 0-6" in capsys.readouterr().out
    with pytest.raises(StvsrError, match="no config.yaml"):
        summarize_run(tmp_path)


def test_svsr_runs_record_psnr_y(tmp_path: Path, run_dir: Path) -> None:
    """A run validated as S-VSR (no new frames) records ``psnr_y``; a space-time one the new
    frames' score."""
    import csv
    import shutil

    d = tmp_path / "svsr_run"
    shutil.copytree(run_dir, d)
    with open(d / "val_log.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    keep = [k for k in rows[0] if "_input" not in k and "_new" not in k]
    with open(d / "val_log.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keep, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    row = summarize_run(d)
    assert "psnr_y," in str(row["val_protocol"])
    assert row["val_score"] == f"{float(rows[-1]['psnr_y']):.3f}"
    assert "psnr_y_new" in str(summarize_run(run_dir)["val_protocol"])
    import yaml

    from stvsr.train.command import best_validated_checkpoint

    cfg = yaml.safe_load((d / "config.yaml").read_text())
    cfg["val"]["degradation"] = "bi+h264:crf=28"
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert str(summarize_run(d)["val_protocol"]).endswith(", bi+h264:crf=28")
    best = best_validated_checkpoint(d)  # S-VSR validation: chosen by psnr_y
    scored = {int(r["step"]): float(r["psnr_y"]) for r in rows}
    assert best is not None and best[1] == max(scored[s] for s in scored
                                               if (d / "checkpoints" /
                                                   f"step_{s:07d}_ema.safetensors").is_file())
