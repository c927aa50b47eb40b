"""The skewtune version (written into every adapter manifest); the root package re-exports it."""

__version__ = "0.1.0"
