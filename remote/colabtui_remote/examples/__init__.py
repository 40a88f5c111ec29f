"""Runnable examples: ``python -m colabtui_remote.examples.digits --help``."""
