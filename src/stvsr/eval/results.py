"""Evaluation results: the JSON-ready dicts of ``stvsr eval --json``, the table it prints, and
the file it writes.

The layout of these dicts is a contract: ``stvsr report``, ``docs/results/*.json`` and the
validation log of training read them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from stvsr.eval.scorer import Scorer

__all__ = ["format_table", "result_model_name", "spacetime_result", "svsr_result", "write_json"]


def result_model_name(model: nn.Module) -> str:
    """The name an eval result gives ``model`` (its preset, else its class)."""
    return getattr(model, "preset", None) or type(model).__name__


def svsr_result(model: nn.Module, scorer: Scorer, run: dict[str, Any],
                frame_files: dict[str, list[str]], saved: dict[str, dict[str, str]],
                saved_bicubic: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    """The S-VSR result: per-clip means with per-frame PSNR-Y curves (model and bicubic), the
    mean of clip means; ``run`` holds ``degradation``, ``crop_border``, ``seconds``, ``scale``,
    ``data``, ``max_frames`` and ``out_dir``."""
    clips = {}
    for name, m in scorer.all.clip_means().items():
        rows = scorer.rows[name]
        bicubic = [r["bicubic_psnr_y"] for r in rows]
        clips[name] = {
            "psnr_y": m["psnr_y"], "ssim_y": m["ssim_y"], "psnr_rgb": m["psnr_rgb"],
            "ssim_rgb": m["ssim_rgb"], "frames": int(m["frames"]),
            "bicubic_psnr_y": float(np.mean(bicubic)),
            "per_frame_psnr_y": [r["psnr_y"] for r in rows],
            "per_frame_bicubic_psnr_y": bicubic,
            "frame_files": frame_files[name],
        }
        if saved.get(name):
            clips[name]["saved_frames"] = saved[name]
        if saved_bicubic and saved_bicubic.get(name):
            clips[name]["saved_bicubic_frames"] = saved_bicubic[name]
    mean = scorer.all.mean()
    result = {
        "model": result_model_name(model),
        "weights": getattr(model, "weights_source", None),
        "task": "svsr",
        "degradation": run["degradation"],
        "crop_border": run["crop_border"],
        "clips": clips,
        "mean": {k: mean[k] for k in ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb")},
        "seconds": round(run["seconds"], 2),
        "scale": run["scale"],
        "data": run["data"],
        "max_frames": run["max_frames"],
    }
    if run["out_dir"] is not None:
        result["figures_dir"] = str(run["out_dir"])
    return result


def spacetime_result(model: nn.Module, scorer: Scorer, run: dict[str, Any],
                     frame_files: dict[str, list[str]], saved: dict[str, dict[str, str]]
                     ) -> dict[str, Any]:
    """The ST-VSR result: per-clip means (all, input and new frames) with per-frame rows, the
    means of clip means; ``run`` holds ``protocol``, ``degradation``, ``seconds``, ``outputs``
    (frames the model made), ``scale``, ``data``, ``max_frames`` and ``out_dir``."""
    clips = scorer.clip_means()
    for name, res in clips.items():
        res["per_frame"] = [{k: r[k] for k in ("frame", "kind", "psnr_y", "ssim_y")}
                            for r in scorer.rows[name]]
        res["frame_files"] = frame_files[name]
        if saved.get(name):
            res["saved_frames"] = saved[name]
    out_dir = run["out_dir"]
    return {
        "model": result_model_name(model),
        "task": "stvsr",
        "protocol": run["protocol"],
        "degradation": run["degradation"],
        "scale": run["scale"],
        "data": run["data"],
        "max_frames": run["max_frames"],
        **({"figures_dir": str(out_dir)} if out_dir is not None else {}),
        "clips": clips,
        "mean": scorer.mean(),
        "seconds": run["seconds"],
        "seconds_per_output_frame": run["seconds"] / max(1, run["outputs"]),
    }


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table of per-clip and mean scores."""
    keys = [k for k in ("psnr_y", "ssim_y", "psnr_rgb", "psnr_y_input", "psnr_y_new")
            if k in result["mean"]]
    head = f"{'clip':<14}" + "".join(f"{k:>14}" for k in keys) + f"{'frames':>8}"
    lines = [f"{result['model']}  ({result.get('task', 'svsr')}, {result['degradation']})", head]
    for name, m in result["clips"].items():
        lines.append(f"{name:<14}" + "".join(_fmt(k, m.get(k)) for k in keys)
                     + f"{m['frames']:>8}")
    lines.append(f"{'mean':<14}" + "".join(_fmt(k, result["mean"][k]) for k in keys))
    return "\n".join(lines)


def _fmt(key: str, value: float | None) -> str:
    if value is None:
        return f"{'-':>14}"
    return f"{value:>14.4f}" if key.startswith("ssim") else f"{value:>14.3f}"


def write_json(result: dict[str, Any], path: str | Path) -> None:
    """Write ``result`` as indented JSON, atomically (a ``.partial`` file renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(path)
