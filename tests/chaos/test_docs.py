"""The chaos documentation covers what the code offers: every fault, every named campaign."""

from __future__ import annotations

from pathlib import Path

from chaos.faults import FAULTS
from chaos.schedule import NAMED

DOCS = Path(__file__).resolve().parent.parent.parent / "docs"


def test_the_fault_catalogue_names_every_fault() -> None:
    """docs/faults.md has a table row for every fault of chaos/faults.py."""
    text = (DOCS / "faults.md").read_text()
    missing = [name for name in FAULTS if f"| `{name}` |" not in text]
    assert not missing, f"faults missing from docs/faults.md: {missing}"


def test_the_chaos_guide_names_every_campaign_and_option() -> None:
    text = (DOCS / "chaos.md").read_text()
    missing = [name for name in NAMED if f"`{name}`" not in text]
    assert not missing, f"campaigns missing from docs/chaos.md: {missing}"
    for option in ("--target", "--bootstrap", "--proxy", "--brokers", "--duration", "--faults", "--acks",
                   "--idempotence", "--override", "--seed", "--report", "--replay", "--campaign",
                   "KCONFORM_TOXIPROXY_BINARY", "KCONFORM_TOXIPROXY_URL"):
        assert option in text, option
