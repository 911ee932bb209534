"""Command-line interface: ``motionflow <command>`` (argparse). Nothing imports this package."""
