"""Subcommands of the ``cinerecon`` CLI, one module each (``add_parser`` and ``run``)."""
