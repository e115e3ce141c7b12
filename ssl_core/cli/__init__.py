"""The ``ssl`` command line: run, list, info, eval. One module per command."""

from ssl_core.cli.app import app, main

__all__ = ["app", "main"]
