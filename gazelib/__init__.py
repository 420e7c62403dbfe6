"""gazelib: learn where people look in videos from what they see, hear and what is said."""

__version__ = "0.1.0"
