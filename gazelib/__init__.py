"""gazelib: learn where people look in videos from what they see, hear and what is said."""
# First, before numpy / torch / ctranslate2 load: one instruction-set path on every CPU (gazelib.core.cpu).
from gazelib.core.cpu import pin as _pin_cpu_path

_pin_cpu_path()

__version__ = "0.7.0"  # the one place: pyproject.toml reads it; bump it with every release (CHANGELOG.md)
