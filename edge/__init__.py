"""The daemon: camera sources, pipeline wiring, command-line interface."""
