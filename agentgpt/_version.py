"""The package version, importable without side effects (the env server reports it)."""

__version__ = "0.1.0"
