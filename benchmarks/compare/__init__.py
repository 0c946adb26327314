"""Side-by-side comparison of daffi 4 (this repository) with daffi 2.2.1, daffi 3.0.1 and a floor.

``python -m benchmarks.compare.run [--quick]``; see ``benchmarks/compare/README.md``.

Nothing is imported here: the driver modules run inside the daffi 2 and daffi 3 virtualenvs,
which must import their own ``daffi`` and not this repository's.
"""
