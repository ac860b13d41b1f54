"""The user documentation covers what the code offers."""

from __future__ import annotations

from pathlib import Path

from reference_broker.config import BROKER_KEYS, TOPIC_KEYS

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_configuration_key_is_documented() -> None:
    """docs/configuration.md has a row for every broker and topic key the broker accepts."""
    text = (DOCS / "configuration.md").read_text()
    missing = [key for key in [*BROKER_KEYS, *TOPIC_KEYS] if f"| `{key}` |" not in text]
    assert not missing, f"undocumented keys: {missing}"
