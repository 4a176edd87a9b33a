"""`python -m edge` (from a checkout) and `python -m footfall.edge` run the CLI."""

from footfall.cli.main import main

raise SystemExit(main())
