"""The package version: a leaf, so modules at any layer can record it."""

__version__ = "0.1.0"
