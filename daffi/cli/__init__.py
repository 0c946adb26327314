"""The ``daffi`` command line: ``daffi.cli.main`` (the command and its exit codes),
``connection`` (how commands reach a running system), ``system`` (nodes, callbacks,
schedules), ``calling`` (``daffi call``), ``output`` (tables and JSON), ``demo``."""
