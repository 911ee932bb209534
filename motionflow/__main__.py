"""``python -m motionflow`` runs the command-line interface."""

from motionflow.cli.main import main

raise SystemExit(main())
