"""``motionflow list``: the registered methods, datasets and evaluation protocols."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("list", help="list methods, datasets and evaluation protocols", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return parser


def catalogue() -> dict[str, list[str]]:
    """Method, dataset and protocol names, by family."""
    from motionflow.datasets import list_datasets
    from motionflow.eval.protocols import list_protocols
    from motionflow.registry import list_methods

    methods = list_methods()
    return {
        "optical-flow methods": methods["optical_flow"],
        "scene-flow methods": methods["scene_flow"],
        "datasets": sorted(list_datasets()),
        "evaluation protocols": list_protocols(),
    }


def run(args: argparse.Namespace) -> int:
    from motionflow.eval.protocols import PROTOCOLS

    table = catalogue()
    if args.json:
        print(json.dumps({**table, "evaluation protocols": {n: PROTOCOLS[n].summary for n in table["evaluation protocols"]}},
                         indent=2))
        return 0
    width = max(len(n) for n in PROTOCOLS)
    for title, names in table.items():
        print(f"{title}:")
        for name in names:
            line = f"{name:<{width}}  {PROTOCOLS[name].summary}" if title == "evaluation protocols" else name
            print(f"  {line}")
    return 0
