"""footfall: in-store edge foot-traffic recognition."""

__version__ = "0.1.0"
