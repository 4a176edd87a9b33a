"""Configuration: the model of the TOML file, its loader and the example."""
