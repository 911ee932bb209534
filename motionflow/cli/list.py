"""``motionflow list``: the registered methods and datasets."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("list", help="list methods and datasets", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return parser


def catalogue() -> dict[str, list[str]]:
    """Method and dataset names, by family."""
    from motionflow.datasets import list_datasets
    from motionflow.registry import list_methods

    methods = list_methods()
    return {
        "optical-flow methods": methods["optical_flow"],
        "scene-flow methods": methods["scene_flow"],
        "datasets": sorted(list_datasets()),
    }


def run(args: argparse.Namespace) -> int:
    table = catalogue()
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    for title, names in table.items():
        print(f"{title}:")
        for name in names:
            print(f"  {name}")
    return 0
