"""Benchmarks behind `footfall bench`: figures against a baseline measured in the same run."""
