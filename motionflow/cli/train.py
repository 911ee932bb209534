"""``motionflow train``: train or fine-tune an optical-flow network.

    motionflow train --model NAME --dataset NAME[:WEIGHT],... [--root DIR] --out RUN_DIR
                     [--config FILE] [--schedule NAME] [--max-steps N] [--resume] [--init-checkpoint P]
                     [--batch-size B] [--lr LR] [--iters N] [--frames T] [--crop H W] [--device D]
                     [--val-dataset NAME --val-every N] [--no-progress]

Examples::

    motionflow train --model raft --dataset synthetic --out runs/toy --max-steps 200 --crop 128 128
    motionflow train --schedule raft-sintel --root datasets --out runs/sintel --init-checkpoint raft-things.pth
    torchrun --nproc_per_node 4 -m motionflow train --config examples/train_raft_sintel.json --out runs/s
    motionflow train --out runs/sintel --resume

Command-line values override the config file, which overrides the schedule. The run folder gets
``model.pth`` (official layout: ``motionflow estimate --method raft --checkpoint RUN_DIR/model.pth``),
``checkpoints/``, ``train_state.pt``, ``config.json``, ``log.csv`` and ``val.csv``. ``--resume`` continues
the run in ``--out`` exactly (its stored config is used; ``--max-steps`` etc. must match it). Exit codes:
0 ok, 1 failure, 2 bad usage (unknown names, bad config values).
"""

from __future__ import annotations

import argparse
import sys

from .options import torch_device


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train or fine-tune an optical-flow network (raft, videoflow-bof, videoflow-mof, streamflow)",
        description="Train or fine-tune an optical-flow network on weighted dataset mixtures with the published "
        "losses, augmentation and schedules. Runs on one process or under torchrun (DDP).",
    )
    p.add_argument("--model", default=None, help="network: raft, videoflow-bof, videoflow-mof, streamflow; scoop "
                   "(SCOOP's scene-flow feature net, self-supervised, on a scene-flow dataset such as synthetic-lidar)")
    p.add_argument("--dataset", default=None, metavar="NAME[:WEIGHT],...",
                   help="training mixture, e.g. synthetic, sintel-clean:100,sintel-final:100,kitti2015:200, or a stage "
                   "(stage-chairs, stage-things, stage-sintel, stage-kitti)")
    p.add_argument("--root", default=None, help="dataset root (not needed for synthetic)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (weights, state, logs)")
    p.add_argument("--config", default=None, metavar="FILE", help="JSON (or YAML with PyYAML) config file")
    p.add_argument("--schedule", default=None, help="published schedule, e.g. raft-sintel, videoflow-mof-things")
    p.add_argument("--max-steps", type=int, default=None, metavar="N", help="optimizer steps")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its train_state.pt")
    p.add_argument("--init-checkpoint", default=None, metavar="PATH", help="weights to fine-tune from (official layout)")
    p.add_argument("--batch-size", type=int, default=None, metavar="B", help="global batch size")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (OneCycle)")
    p.add_argument("--iters", type=int, default=None, help="refinement iterations in training")
    p.add_argument("--frames", type=int, default=None, metavar="T", help="clip length (default: the network's)")
    p.add_argument("--crop", type=int, nargs=2, default=None, metavar=("H", "W"), help="training crop")
    p.add_argument("--device", type=torch_device, default=None, help="cpu, cuda (default: cuda when available)")
    p.add_argument("--num-workers", type=int, default=None, metavar="N", help="data loader processes")
    p.add_argument("--val-dataset", default=None, metavar="NAME", help="validation dataset (evaluate)")
    p.add_argument("--val-every", type=int, default=None, metavar="N", help="validate every N steps")
    p.add_argument("--mixed-precision", action="store_true", default=None, help="fp16 autocast on CUDA")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args) -> int:
    from motionflow.train import ConfigError, load_config, resume_config, train

    overrides = {
        "model": args.model,
        "dataset": args.dataset,
        "root": args.root,
        "out": args.out,
        "schedule": args.schedule,
        "max_steps": args.max_steps,
        "init_checkpoint": args.init_checkpoint,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "iters": args.iters,
        "frames": args.frames,
        "crop": list(args.crop) if args.crop else None,
        "device": args.device,
        "num_workers": args.num_workers,
        "val_dataset": args.val_dataset,
        "val_every": args.val_every,
        "mixed_precision": args.mixed_precision,
        "progress": False if args.no_progress else None,
    }
    try:
        if args.resume and args.config is None:
            cfg = resume_config(args.out, **{k: v for k, v in overrides.items() if k != "out"})
        else:
            cfg = load_config(args.config, **overrides)
    except ConfigError as exc:
        print(f"motionflow train: error: {exc}", file=sys.stderr)
        return 2
    try:
        result = train(cfg, resume=args.resume)
    except ConfigError as exc:
        print(f"motionflow train: error: {exc}", file=sys.stderr)
        return 2
    import os

    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports
        return 0
    last = result.history[-1] if result.history else None
    summary = f"trained {cfg.model} to step {result.step}; weights: {result.weights}"
    if last is not None:
        summary += f"; last loss {last['loss']:.4f}, epe {last['epe']:.3f}"
    print(summary)
    return 0
