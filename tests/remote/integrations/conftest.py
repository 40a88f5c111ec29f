"""Fixtures of the framework tests (helpers in framework_runs.py)."""

from __future__ import annotations

import os

import pytest
from framework_runs import Example

os.environ.setdefault("KERAS_BACKEND", "torch")  # Keras 3 on torch, before anything imports it


@pytest.fixture
def example():
    """``example(script, args, env=None) -> Example`` (not started); killed at teardown."""
    made: list[Example] = []

    def make(script: str, args: list[str], env: dict[str, str] | None = None) -> Example:
        ex = Example(script, [str(a) for a in args], env or {})
        made.append(ex)
        return ex

    yield make
    for ex in made:
        ex.kill()
