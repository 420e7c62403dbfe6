"""gazelib: learn where people look in videos from what they see, hear and what is said."""

__version__ = "0.2.0"  # the one place: pyproject.toml reads it; bump it with every release (CHANGELOG.md)
