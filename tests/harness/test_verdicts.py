"""The verdict words are coloured on a terminal only, and never with NO_COLOR."""

from __future__ import annotations

import click
import pytest

from harness.verdicts import colour_verdict


def test_the_verdict_word_is_coloured_and_the_rest_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    text = colour_verdict("table\nINVALID: 2 failed\nVALID is not a prefix here")
    lines = text.split("\n")
    assert lines[0] == "table"
    assert lines[1] == click.style("INVALID", fg="red", bold=True) + ": 2 failed"
    assert lines[2].startswith(click.style("VALID", fg="green", bold=True))
    assert click.unstyle(text) == "table\nINVALID: 2 failed\nVALID is not a prefix here"
    assert colour_verdict("NOT JUDGED: x").startswith(click.style("NOT JUDGED", fg="yellow", bold=True))
    monkeypatch.setenv("NO_COLOR", "1")
    assert colour_verdict("INVALID: 2 failed") == "INVALID: 2 failed"
