"""Model ledgers: the training history of each shipped model, one CSV row per run.

*Design.* ``docs/models/<model>-ledger.csv`` holds every training run that produced, or tried
to produce, a shipped weights file: what it started from, steps and samples seen, device,
minutes, and its held-out validation score at each validated checkpoint. A run's row is built
from its output folder (``config.yaml``, ``train_log.csv``, ``val_log.csv``) by
:func:`summarize_run`; :func:`decide` says whether the run's checkpoint may replace the shipped
file — only when its held-out validation beats the shipped row's (the rule that keeps a
sequence of runs on spare machines from ever making the shipped model worse).
"""

from __future__ import annotations

import csv
import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

import yaml

from stvsr.errors import StvsrError
from stvsr.train.state import read_lineage

__all__ = ["FIELDS", "Decision", "append_row", "decide", "read_ledger", "summarize_run"]

FIELDS = ["run", "date", "model", "config", "start", "start_step", "end_step", "batch",
          "lr_patch", "samples", "device", "precision", "minutes", "val_protocol", "val_score",
          "val_curve", "shipped", "note"]


def read_ledger(path: str | Path) -> list[dict[str, str]]:
    """The rows of a ledger CSV (``[]`` when the file does not exist yet)."""
    p = Path(path)
    if not p.is_file():
        return []
    with open(p, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if rows and set(FIELDS) - set(rows[0]):
        raise StvsrError(f"{p} is not a ledger (needs columns {', '.join(FIELDS)})")
    return rows


def append_row(path: str | Path, row: dict[str, object]) -> dict[str, str]:
    """Append ``row`` (missing fields empty, ``run`` numbered) to the ledger at ``path``."""
    p = Path(path)
    rows = read_ledger(p)
    full = {k: str(row.get(k, "")) for k in FIELDS}
    full["run"] = full["run"] or str(len(rows) + 1)
    new = not p.is_file()
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        if new:
            w.writeheader()
        w.writerow(full)
    return full


def _csv_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def summarize_run(run_dir: str | Path, metric: str | None = None) -> dict[str, object]:
    """A ledger row (without ``shipped``) for the training output folder ``run_dir``.

    ``metric``: the validation score to record; by default ``psnr_y_new`` (the new frames) when
    the run validated space-time output, else ``psnr_y``.

    ``minutes`` is the sum of the logged step times (start-up and validation excluded);
    ``val_curve`` lists ``step:score`` for every validated checkpoint; ``val_score`` is the last.
    A run that continued a shipped training state (``model.init_state``) counts its steps on
    from that state's (``start_step`` / ``end_step`` / the curve's steps are cumulative).
    """
    d = Path(run_dir)
    cfg_path = d / "config.yaml"
    if not cfg_path.is_file():
        raise StvsrError(f"{d} is not a training output folder (no config.yaml); pass the "
                         "train.out_dir of the run")
    cfg = yaml.safe_load(cfg_path.read_text())
    train = _csv_rows(d / "train_log.csv")
    if not train:
        raise StvsrError(f"{d}/train_log.csv has no rows: the run logged no step")
    steps = [int(r["step"]) for r in train]
    seconds, prev = 0.0, None
    for r, s in zip(train, steps, strict=True):
        n = s - prev if prev is not None else int(cfg["train"].get("log_every", 1))
        seconds += float(r["sec_per_step"]) * max(n, 0)
        prev = s
    prior = int(read_lineage(d).get("steps", 0))
    val_rows = _csv_rows(d / "val_log.csv")
    if metric is None:
        metric = "psnr_y_new" if not val_rows or "psnr_y_new" in val_rows[0] else "psnr_y"
    vals = [r for r in val_rows if metric in r]
    curve = ";".join(f"{int(r['step']) + prior}:{float(r[metric]):.3f}" for r in vals)
    model, data, val = cfg["model"], cfg["data"], cfg.get("val") or {}
    start_step = max(0, steps[0] - int(cfg["train"].get("log_every", 1)))
    batch = int(data["batch_size"])
    start = model.get("init") or model.get("init_mode", "")
    if prior:
        start += f" + its training state ({prior} steps)"
    return {
        "date": _dt.date.today().isoformat(), "model": model["preset"],
        "config": cfg.get("name", ""), "start": start,
        "start_step": start_step + prior, "end_step": steps[-1] + prior, "batch": batch,
        "lr_patch": data.get("lr_patch", ""), "samples": (steps[-1] - start_step) * batch,
        "device": cfg["train"].get("device", ""), "precision": cfg["train"].get("precision", ""),
        "minutes": round(seconds / 60, 1),
        "val_protocol": f"{val.get('protocol', '')} {val.get('max_frames', '')} frames, "
                        f"{metric}, {val.get('data', '')}"
                        + (f", {val['degradation']}" if val.get("degradation", "bi") != "bi"
                           else ""),
        "val_score": f"{float(vals[-1][metric]):.3f}" if vals else "", "val_curve": curve,
    }


@dataclass
class Decision:
    """Whether a run's checkpoint replaces the shipped file, and why (one line)."""

    ship: bool
    reason: str


def decide(rows: list[dict[str, str]], score: float | None, margin: float = 0.0) -> Decision:
    """Ship only when ``score`` beats the newest shipped row's ``val_score`` by ``margin``."""
    if score is None:
        return Decision(False, "the run has no held-out validation score; set val.every and "
                               "val.data")
    shipped = [r for r in rows if r["shipped"] not in ("", "no") and r["val_score"]]
    if not shipped:
        return Decision(True, f"no shipped row with a validation score yet; {score:.3f}")
    best = float(shipped[-1]["val_score"])
    if score > best + margin:
        return Decision(True, f"held-out {score:.3f} > shipped {best:.3f}")
    by = f" by more than {margin:g}" if margin > 0 else ""
    return Decision(False, f"held-out {score:.3f} does not beat the shipped {best:.3f}{by}; "
                           "the shipped file stays (use --force to replace it anyway)")
