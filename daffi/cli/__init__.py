"""Command-line programs: ``python -m daffi demo`` and ``python -m daffi controller``."""
