"""The package version, at the floor so that writers of files (BPMN, metadata) can stamp it."""

__all__ = ["__version__"]

__version__ = "0.1.0"
