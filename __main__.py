"""`python -m footfall` runs the command-line interface."""

from footfall.cli.main import main

raise SystemExit(main())
