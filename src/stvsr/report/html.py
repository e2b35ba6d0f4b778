"""The report page: numbers table, per-frame PSNR charts (inline SVG) and frame viewers.

Everything the page needs is in the one file (styles, script, images as data URIs) unless
``external`` puts the images in a folder beside it, named relatively. No network access, no
library: it works opened from ``file://``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from stvsr.report.page import FrameView, Section, Series

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
           "#e377c2"]
BICUBIC_COLOR = "#7f7f7f"


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _num(v: float | None, digits: int) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


# --------------------------------------------------------------------------- images


class _Images:
    """Encodes each image once; hands out ids that the page's script resolves."""

    def __init__(self, out: Path, external: bool, jpeg_quality: int | None) -> None:
        self.urls: dict[str, str] = {}
        self.external = external
        self.jpeg = jpeg_quality
        self.folder = out.with_name(out.stem + "_files")
        if external:
            self.folder.mkdir(parents=True, exist_ok=True)

    def add(self, rgb: np.ndarray) -> str:
        from PIL import Image

        key = f"i{len(self.urls)}"
        buf = io.BytesIO()
        img = Image.fromarray(np.ascontiguousarray(rgb))
        if self.jpeg:
            img.save(buf, format="JPEG", quality=int(self.jpeg), subsampling=0)
            mime, ext = "image/jpeg", "jpg"
        else:
            img.save(buf, format="PNG", compress_level=6)
            mime, ext = "image/png", "png"
        data = buf.getvalue()
        if self.external:
            name = f"{key}.{ext}"
            (self.folder / name).write_bytes(data)
            self.urls[key] = f"{self.folder.name}/{name}"
        else:
            self.urls[key] = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
        return key


# --------------------------------------------------------------------------- chart


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    span = max(hi - lo, 1e-9)
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


def svg_chart(series: list[Series], n: int, marks: list[int], title: str) -> str:
    """Per-frame PSNR-Y of every series on one chart (inline SVG). New frames (ST-VSR) are
    hollow markers; ``marks`` (frames shown below) are dashed vertical lines."""
    vals = [v for s in series for v in s.values if v is not None]
    if not vals or n < 1:
        return ""
    w, h = 760, 300
    ml, mr, mt, mb = 56, 16, 16, 40
    pw, ph = w - ml - mr, h - mt - mb
    lo, hi = min(vals), max(vals)
    pad = max(0.25, 0.06 * (hi - lo))
    lo, hi = math.floor((lo - pad) * 2) / 2, math.ceil((hi + pad) * 2) / 2

    def sx(i: float) -> float:
        return ml + (pw * i / (n - 1) if n > 1 else pw / 2)

    def sy(v: float) -> float:
        return mt + ph * (1 - (v - lo) / (hi - lo))

    parts = [f'<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
             f'aria-label="{_esc(title)}" xmlns="http://www.w3.org/2000/svg">',
             f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="#fff" stroke="#bbb"/>']
    for t in _ticks(lo, hi):
        y = sy(t)
        parts.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{y:.1f}" y2="{y:.1f}" '
                     'stroke="#eee"/>')
        parts.append(f'<text x="{ml - 6}" y="{y + 4:.1f}" text-anchor="end" '
                     f'class="tick">{t:g}</text>')
    xt = _ticks(0, n - 1, 8) if n > 1 else [0]
    for t in xt:
        if t != int(t):
            continue
        x = sx(t)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{mt + ph}" y2="{mt + ph + 4}" '
                     'stroke="#888"/>')
        parts.append(f'<text x="{x:.1f}" y="{mt + ph + 16}" text-anchor="middle" '
                     f'class="tick">{int(t)}</text>')
    parts.append(f'<text x="{ml + pw / 2}" y="{h - 6}" text-anchor="middle" '
                 'class="axis">frame</text>')
    parts.append(f'<text transform="translate(14 {mt + ph / 2}) rotate(-90)" '
                 'text-anchor="middle" class="axis">PSNR-Y (dB)</text>')
    for m in marks:
        x = sx(m)
        parts.append(f'<line class="mark" x1="{x:.1f}" x2="{x:.1f}" y1="{mt}" y2="{mt + ph}" '
                     f'stroke="#444" stroke-dasharray="2 3"><title>frame {m} shown below'
                     '</title></line>')
    color_i = 0
    legend = []
    for s in series:
        if s.dashed:
            color = BICUBIC_COLOR
        else:
            color = PALETTE[color_i % len(PALETTE)]
            color_i += 1
        pts = [(i, v) for i, v in enumerate(s.values) if v is not None]
        if not pts:
            continue
        path = " ".join(f"{'M' if k == 0 else 'L'}{sx(i):.1f},{sy(v):.1f}"
                        for k, (i, v) in enumerate(pts))
        dash = ' stroke-dasharray="5 4"' if s.dashed else ""
        parts.append(f'<g class="series" data-label="{_esc(s.label)}">'
                     f'<path d="{path}" fill="none" stroke="{color}" stroke-width="1.6"{dash}/>')
        if len(pts) <= 400:
            for i, v in pts:
                new = bool(s.kinds) and i < len(s.kinds) and s.kinds[i] == "new"
                fill = "#fff" if new else color
                what = "new frame" if new else ("input frame" if s.kinds else "frame")
                parts.append(f'<circle cx="{sx(i):.1f}" cy="{sy(v):.1f}" r="2.6" fill="{fill}" '
                             f'stroke="{color}" stroke-width="1.2"><title>{_esc(s.label)}, '
                             f'{what} {i}: {v:.2f} dB</title></circle>')
        parts.append("</g>")
        legend.append((s.label, color, s.dashed))
    parts.append("</svg>")
    dashes = ' stroke-dasharray="5 4"'
    items = "".join(
        f'<span class="key"><svg width="26" height="10"><line x1="0" x2="26" y1="5" y2="5" '
        f'stroke="{c}" stroke-width="2"{dashes if d else ""}/></svg>'
        f'{_esc(label)}</span>' for label, c, d in legend)
    if any(s.kinds for s in series):
        items += ('<span class="key"><svg width="12" height="10"><circle cx="6" cy="5" r="3" '
                  'fill="#555"/></svg>restored input frame</span><span class="key"><svg '
                  'width="12" height="10"><circle cx="6" cy="5" r="3" fill="#fff" '
                  'stroke="#555"/></svg>new frame</span>')
    return f'<div class="legend">{items}</div>' + "".join(parts)


# --------------------------------------------------------------------------- viewers


def _viewer(view: FrameView, images: _Images, sec_key: str) -> str:
    ids = [images.add(v.image) for v in view.variants]
    h, w = view.variants[0].image.shape[:2]

    def label(i: int) -> str:
        v = view.variants[i]
        return v.label + (f" — {v.psnr_y:.2f} dB" if v.psnr_y is not None else "")

    def options(selected: int) -> str:
        return "".join(f'<option value="{k}"{" selected" if k == selected else ""}>'
                       f'{_esc(label(k))}</option>' for k in range(len(ids)))

    badge = ""
    if view.kind == "new":
        badge = '<span class="badge new">new frame — made by the model, no input at this time'\
                '</span>'
    elif view.kind == "input":
        badge = '<span class="badge input">restored input frame</span>'
    when = f" (t = {view.time:.3f} s)" if view.time is not None else ""
    variants_json = _esc(json.dumps([{"id": i, "label": label(k)} for k, i in enumerate(ids)]))
    crops = "".join(
        f'<div class="crop"><div class="crop-img" data-img="{i}"></div>'
        f'<div class="crop-label">{_esc(label(k))}</div></div>' for k, i in enumerate(ids))
    left, right = view.left, view.right
    zoom = max(1, min(4, 480 // max(1, w)))  # small frames are shown enlarged (pixelated)
    size = f' style="width:{w * zoom}px"' if zoom > 1 else ""
    return f"""
<figure class="viewer" id="{_esc(sec_key)}-f{view.index}" data-frame="{view.index}"
  data-kind="{_esc(view.kind)}" data-width="{w}" data-height="{h}" data-variants="{variants_json}">
  <figcaption><b>frame {view.index}</b>{_esc(when)} {badge}
    <label>left <select class="pick-left">{options(left)}</select></label>
    <label>right <select class="pick-right">{options(right)}</select></label>
    <label>zoom <select class="pick-zoom"><option value="2">2×</option>
      <option value="4" selected>4×</option><option value="8">8×</option></select></label>
  </figcaption>
  <div class="body"><div class="pane">
  <div class="stage" title="click to choose where the crops are taken">
    <img class="under{" pixelated" if zoom > 1 else ""}" data-img="{ids[right]}"{size}
      alt="{_esc(label(right))}" draggable="false">
    <div class="over" style="width:50%"><img data-img="{ids[left]}" alt="{_esc(label(left))}"
      draggable="false"></div>
    <div class="split" style="left:50%"></div>
    <div class="marker"></div>
    <span class="tag tag-left">{_esc(view.variants[left].label)}</span>
    <span class="tag tag-right">{_esc(view.variants[right].label)}</span>
  </div>
  <input class="slider" type="range" min="0" max="100" step="0.1" value="50"
    aria-label="slider between the left and the right image"></div>
  <div class="crops">{crops}</div></div>
</figure>"""


def _section(sec: Section, images: _Images) -> str:
    marks = [v.index for v in sec.frames]
    chart = svg_chart(sec.series, sec.n_frames, marks, f"per-frame PSNR-Y, {sec.title}")
    facts = ""
    if sec.facts:
        facts = "<dl class=facts>" + "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>"
                                             for k, v in sec.facts) + "</dl>"
    notes = "".join(f'<p class="note">{_esc(n)}</p>' for n in sec.notes)
    viewers = "".join(_viewer(v, images, sec.key) for v in sec.frames)
    chart_html = f'<div class="chart-box">{chart}</div>' if chart else ""
    return (f'<section class="clip" id="{_esc(sec.key)}"><h2>{_esc(sec.title)} '
            f'<small>{_esc(sec.subtitle)}</small></h2>{facts}{chart_html}{notes}{viewers}'
            '</section>')


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    st = any(r["task"] == "ST-VSR" for r in rows)
    bic = any(r["bicubic_psnr_y"] is not None for r in rows)
    head = ["clip", "model", "task", "setting", "PSNR-Y (dB)", "SSIM-Y"]
    if st:
        head += ["PSNR-Y input frames", "PSNR-Y new frames"]
    head += ["frames"]
    if bic:
        head += ["bicubic PSNR-Y"]
    out = ['<table id="numbers-table"><thead><tr>'
           + "".join(f"<th>{_esc(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    best: dict[str, float] = {}
    for r in rows:
        if r["psnr_y"] is not None:
            best[r["clip"] + r["setting"]] = max(best.get(r["clip"] + r["setting"], -1e9),
                                                 r["psnr_y"])
    for r in rows:
        top = r["psnr_y"] is not None and r["psnr_y"] == best.get(r["clip"] + r["setting"])
        cells = [_esc(r["clip"]), _esc(r["model"]), _esc(r["task"]), _esc(r["setting"]),
                 f'<span class="{"best" if top else ""}">{_num(r["psnr_y"], 3)}</span>',
                 _num(r["ssim_y"], 4)]
        if st:
            cells += [_num(r["psnr_y_input"], 3), _num(r["psnr_y_new"], 3)]
        frames = "–" if r["frames"] is None else str(r["frames"])
        if r["frames_new"]:
            frames += f' <span class="dim">({r["frames_new"]} new)</span>'
        cells.append(frames)
        if bic:
            cells.append(_num(r["bicubic_psnr_y"], 3))
        cls = ' class="mean"' if r["mean"] else ""
        out.append(f'<tr{cls} data-clip="{_esc(r["clip"])}" data-model="{_esc(r["model"])}">'
                   + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def render(title: str, rows: list[dict[str, Any]], sections: list[Section], sources: list[str],
           videos: list[tuple[str, str]], *, out: Path, external: bool,
           jpeg_quality: int | None) -> str:
    images = _Images(out, external, jpeg_quality)
    body = "".join(_section(s, images) for s in sections)
    toc = "".join(f'<li><a href="#{_esc(s.key)}">{_esc(s.title)}</a> '
                  f'<span class="dim">{_esc(s.subtitle)}</span></li>' for s in sections)
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    what = ", ".join(sources + [f"{a} → {b}" for a, b in videos])
    numbers = ""
    if rows:
        numbers = ('<section id="numbers"><h2>Numbers <small>Y channel (BT.601), 8-bit frames; '
                   'mean = mean of clip means</small></h2>' + _table(rows) + "</section>")
    data = json.dumps(images.urls).replace("</", "<\\/")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(title)}</title>
<style>{_CSS}</style></head>
<body>
<header><h1>{_esc(title)}</h1><p class="dim">made {made} from {_esc(what)}</p>
<ul class="toc">{toc}</ul></header>
{numbers}
{body}
<footer class="dim">stvsr report — self-contained page; no network needed.</footer>
<script type="application/json" id="stvsr-images">{data}</script>
<script>{_JS}</script>
</body></html>
"""


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1280px;
 padding:12px 20px 40px;color:#222;background:#fafafa}
h1{margin:.2em 0}h2{margin:1.4em 0 .4em;border-bottom:1px solid #ddd}h2 small{font-weight:normal;
 color:#666;font-size:.7em;margin-left:.5em}
.dim{color:#777}.toc{columns:3;margin:.3em 0 0;padding-left:1.2em}
table{border-collapse:collapse;background:#fff;font-variant-numeric:tabular-nums}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f0f0f0}
td:nth-child(-n+4){text-align:left}tr.mean td{font-weight:600;background:#f6f6ff}
.best{color:#0a6a0a;font-weight:700}
.chart-box{background:#fff;border:1px solid #ddd;padding:6px;display:inline-block;
 max-width:100%;overflow-x:auto}
.chart .tick{font-size:11px;fill:#555}.chart .axis{font-size:12px;fill:#333}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:12px;margin:2px 4px 4px}
.key svg{vertical-align:middle;margin-right:4px}
.note{color:#8a5a00;margin:.4em 0}.facts{display:grid;grid-template-columns:max-content 1fr;
 gap:2px 10px;margin:.4em 0}.facts dt{font-weight:600}.facts dd{margin:0}
.viewer{margin:14px 0;background:#fff;border:1px solid #ddd;padding:8px}
.viewer figcaption{display:flex;flex-wrap:wrap;gap:6px 14px;align-items:center;margin-bottom:6px}
.badge{border-radius:3px;padding:1px 6px;font-size:12px}.badge.new{background:#ffe3b3;
 color:#7a4500;border:1px solid #f0b050}.badge.input{background:#e4efff;color:#1d4f91}
.stage{position:relative;user-select:none;cursor:crosshair;line-height:0;max-width:100%;
 width:fit-content}
.stage img.under{display:block;max-width:100%;height:auto}
.stage .over{position:absolute;left:0;top:0;bottom:0;overflow:hidden}
.stage .over img{position:absolute;left:0;top:0;height:100%;width:auto;max-width:none}
.stage img.pixelated,.stage img.pixelated~.over img{image-rendering:pixelated}
.stage .split{position:absolute;top:0;bottom:0;width:2px;margin-left:-1px;background:#fff;
 box-shadow:0 0 2px #000;pointer-events:none}
.stage .marker{position:absolute;border:2px solid #ff0;box-shadow:0 0 0 1px #000;
 pointer-events:none}
.stage .tag{position:absolute;top:6px;line-height:1.3;background:rgba(0,0,0,.6);color:#fff;
 font-size:12px;padding:1px 6px;border-radius:3px;pointer-events:none}
.tag-left{left:6px}.tag-right{right:6px}
.body{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
.pane{max-width:100%}.slider{display:block;width:100%;margin:6px 0 0}
.crops{display:flex;flex-wrap:wrap;gap:8px;align-content:flex-start;max-width:400px}
.crop{width:192px}
.crop-img{width:192px;height:192px;border:1px solid #999;background-repeat:no-repeat;
 image-rendering:pixelated;background-color:#000}
.crop-label{font-size:12px;text-align:center}
"""

_JS = r"""
(function () {
  "use strict";
  var IMAGES = JSON.parse(document.getElementById("stvsr-images").textContent);
  var CROP = 192;
  document.querySelectorAll("img[data-img]").forEach(function (im) {
    im.src = IMAGES[im.dataset.img];
  });
  document.querySelectorAll("figure.viewer").forEach(function (fig) {
    var W = +fig.dataset.width, H = +fig.dataset.height;
    var variants = JSON.parse(fig.dataset.variants);
    var stage = fig.querySelector(".stage"), over = fig.querySelector(".over");
    var under = fig.querySelector("img.under"), top = over.querySelector("img");
    var split = fig.querySelector(".split"), marker = fig.querySelector(".marker");
    var slider = fig.querySelector(".slider"), zoomSel = fig.querySelector(".pick-zoom");
    var leftSel = fig.querySelector(".pick-left"), rightSel = fig.querySelector(".pick-right");
    var state = {cx: W / 2, cy: H / 2};
    function setSplit() {
      over.style.width = slider.value + "%";
      split.style.left = slider.value + "%";
    }
    function setImages() {
      var l = variants[+leftSel.value], r = variants[+rightSel.value];
      top.src = IMAGES[l.id]; top.alt = l.label;
      under.src = IMAGES[r.id]; under.alt = r.label;
      fig.querySelector(".tag-left").textContent = l.label;
      fig.querySelector(".tag-right").textContent = r.label;
    }
    function setCrops() {
      var z = +zoomSel.value, half = CROP / (2 * z);
      var cx = Math.min(Math.max(state.cx, half), Math.max(half, W - half));
      var cy = Math.min(Math.max(state.cy, half), Math.max(half, H - half));
      fig.querySelectorAll(".crop-img").forEach(function (d) {
        d.style.backgroundImage = 'url("' + IMAGES[d.dataset.img] + '")';
        d.style.backgroundSize = (W * z) + "px " + (H * z) + "px";
        d.style.backgroundPosition = (CROP / 2 - cx * z) + "px " + (CROP / 2 - cy * z) + "px";
      });
      marker.style.left = (100 * (cx - half) / W) + "%";
      marker.style.top = (100 * (cy - half) / H) + "%";
      marker.style.width = (100 * 2 * half / W) + "%";
      marker.style.height = (100 * 2 * half / H) + "%";
    }
    slider.addEventListener("input", setSplit);
    leftSel.addEventListener("change", setImages);
    rightSel.addEventListener("change", setImages);
    zoomSel.addEventListener("change", setCrops);
    stage.addEventListener("click", function (e) {
      var r = stage.getBoundingClientRect();
      state.cx = (e.clientX - r.left) / r.width * W;
      state.cy = (e.clientY - r.top) / r.height * H;
      setCrops();
    });
    setSplit();
    setCrops();
  });
})();
"""
