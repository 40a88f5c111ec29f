"""Fixtures of the framework tests (helpers in framework_runs.py)."""

from __future__ import annotations

import pytest
from framework_runs import Example


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
