"""``python -m training``: train, evaluate, export (thin argument parsing over library calls)."""

from training.cli import main

raise SystemExit(main())
