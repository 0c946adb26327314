"""Hypothesis profiles of the fuzz tests (issue 11, "hostile input").

``default`` runs with the normal test suite (the whole directory, both anyio backends, in
about half a minute on two cores); ``long`` runs 30 times as many examples, for a separate
session::

    DAFFI_FUZZ_PROFILE=long python -m pytest -p no:cacheprovider tests/fuzz

No example database is written (the suite runs on clean clones; a failure prints the
example and its reproduction blob instead, ``print_blob``), and what hypothesis caches
(its Unicode tables, the constants it found in the code) goes to a directory under the
system temp dir, never to a ``.hypothesis/`` in the checkout.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Read by hypothesis the first time it touches its storage (after this conftest loads).
os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "daffi-hypothesis")
)

from hypothesis import HealthCheck, settings

#: examples per property in the default profile; the long profile runs LONG_FACTOR times more
DEFAULT_EXAMPLES = 150
LONG_FACTOR = 30

for name, examples in [("default", DEFAULT_EXAMPLES), ("long", DEFAULT_EXAMPLES * LONG_FACTOR)]:
    settings.register_profile(
        name,
        max_examples=examples,
        deadline=None,
        print_blob=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
settings.load_profile(os.environ.get("DAFFI_FUZZ_PROFILE", "default"))
