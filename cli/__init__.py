"""The operator command line of the store box: `footfall ...`."""
