"""Conary: recipes, hermetic cooks, CCS packages, an installer runtime and bootable images."""

__version__ = "0.1.0"
