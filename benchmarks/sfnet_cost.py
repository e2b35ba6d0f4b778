"""Parameters, multiply-adds and CPU time per output frame of the SFNet presets.

MACs are counted with forward hooks during a real forward pass: every ``nn.Conv2d`` /
``nn.Linear`` (``Cout · Cin/groups · k² · Ho · Wo``), every deformable conv (the same conv term
plus 4 bilinear taps per sampled value, ``4 · Cin · k² · Ho · Wo``; its offset conv is an
``nn.Conv2d`` and counted as such) and every DF memory read (``M · (2r+1)² · (Ck + Cv) · hp · wp``
for the logits and the weighted sum). Element-wise ops, pooling, pixel shuffle and bilinear
resizes are not counted. "Per output frame" divides by ``2n - 1``; DF cost grows with ``n``
until every step fetches ``M`` entries, so a steady-state figure (both modules reading ``M``
entries at every step) is printed too.

Usage::

    .venv/bin/python benchmarks/sfnet_cost.py [--n 4] [--height 144] [--width 180] \
        [--threads 1] [--repeat 1] [--out sfnet_cost.json] [--presets sfnet-lite sfnet]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

import stvsr
from stvsr.models.sfnet import DistantFetch, SFNet
from stvsr.ops.dcn import ModulatedDeformConv2d


def count_macs(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Run ``model(x)`` once under no_grad and return MACs by category."""
    totals = {"conv": 0.0, "dcn": 0.0, "df_attention": 0.0}

    def conv_hook(mod: nn.Conv2d, inp, out) -> None:
        k = mod.kernel_size[0] * mod.kernel_size[1]
        totals["conv"] += out.numel() * (mod.in_channels // mod.groups) * k

    def linear_hook(mod: nn.Linear, inp, out) -> None:
        totals["conv"] += out.numel() * mod.in_features

    def dcn_hook(mod: ModulatedDeformConv2d, inp, out) -> None:
        k = mod.kernel_size[0] * mod.kernel_size[1]
        b, cout, ho, wo = out.shape
        totals["dcn"] += b * ho * wo * k * mod.in_channels * (cout / mod.groups + 4)

    def df_hook(mod: DistantFetch, inp, out) -> None:
        _, keys, values = inp
        b, m, ck, hp, wp = keys.shape
        d2 = (2 * mod.radius + 1) ** 2
        totals["df_attention"] += b * m * d2 * (ck + values.shape[2]) * hp * wp

    handles = []
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            handles.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, nn.Linear):
            handles.append(mod.register_forward_hook(linear_hook))
        elif isinstance(mod, ModulatedDeformConv2d):
            handles.append(mod.register_forward_hook(dcn_hook))
        if isinstance(mod, DistantFetch):
            handles.append(mod.register_forward_hook(df_hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    totals["total"] = sum(totals.values())
    return totals


def steady_state_df(model: SFNet, h: int, w: int) -> float:
    """DF attention MACs per output frame when BRM and FRM both read ``M`` entries."""
    df = model.brm.df
    m = model.fetch_frames or 0
    st = model.store_stride
    hp, wp = -(-h // st), -(-w // st)
    ck = df.query.out_channels
    cv = df.out_conv.in_channels
    return 2 * m * (2 * df.radius + 1) ** 2 * (ck + cv) * hp * wp


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["sfnet-lite", "sfnet"])
    p.add_argument("--n", type=int, default=4, help="LR input frames")
    p.add_argument("--height", type=int, default=144)
    p.add_argument("--width", type=int, default=180)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--out", default="sfnet_cost.json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    x = torch.rand(1, a.n, 3, a.height, a.width)
    frames = 2 * a.n - 1
    rows = []
    for name in a.presets:
        model = stvsr.create_model(name, weights=None)
        params = sum(p.numel() for p in model.parameters())
        macs = count_macs(model, x)
        times = []
        with torch.no_grad():
            for _ in range(a.repeat):
                t0 = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - t0)
        rows.append({
            "preset": name,
            "params": params,
            "gmacs_per_output_frame": macs["total"] / frames / 1e9,
            "gmacs_breakdown_per_frame": {k: v / frames / 1e9 for k, v in macs.items()},
            "df_attention_gmacs_steady_state": steady_state_df(model, a.height, a.width) / 1e9,
            "cpu_seconds_per_output_frame": min(times) / frames,
        })
    print(f"LR {a.width}x{a.height}, n={a.n} -> {frames} output frames at "
          f"{4 * a.width}x{4 * a.height}, {a.threads} CPU thread(s)")
    print(f"{'preset':10s} {'params':>10s} {'GMAC/frame':>11s} {'conv':>8s} {'dcn':>7s} "
          f"{'DF':>6s} {'DF(M)':>6s} {'CPU s/frame':>12s}")
    for r in rows:
        b = r["gmacs_breakdown_per_frame"]
        print(f"{r['preset']:10s} {r['params']:>10,d} {r['gmacs_per_output_frame']:>11.2f} "
              f"{b['conv']:>8.2f} {b['dcn']:>7.2f} {b['df_attention']:>6.3f} "
              f"{r['df_attention_gmacs_steady_state']:>6.3f} "
              f"{r['cpu_seconds_per_output_frame']:>12.2f}")
    result = {"lr_size": [a.height, a.width], "n": a.n, "output_frames": frames,
              "threads": a.threads, "torch": torch.__version__, "presets": rows}
    Path(a.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
