"""`python -m footfall` runs the command-line interface."""

from footfall.edge.cli import main

raise SystemExit(main())
