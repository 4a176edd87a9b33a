"""Tooling that does not run on the box in production: the demo, generated store days, a local broker."""
