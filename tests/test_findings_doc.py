"""docs/findings.md is a table a user can rerun: every command it names exists and parses."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from chaos.cli import main
from harness.conformance.registry import CHECKS, split_instance

FINDINGS = Path(__file__).resolve().parent.parent / "docs" / "findings.md"
BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def commands() -> list[str]:
    """Every `kconform ...` and `benchmarks/...` command the page shows in inline code."""
    text = FINDINGS.read_text()
    found = re.findall(r"`((?:kconform|\.venv/bin/python benchmarks/)[^`]+)`", text)
    return sorted(set(found))


def test_the_page_lists_findings_with_commands() -> None:
    """The page exists and names at least librdkafka #4953 and a Tansu finding, each with a command."""
    text = FINDINGS.read_text()
    assert "librdkafka/issues/4953" in text and "Tansu" in text
    assert any("--campaign epoch-bump-duplicates" in c for c in commands())
    assert any("--target tansu" in c for c in commands())


@pytest.mark.parametrize("command", commands())
def test_every_command_on_the_page_exists(command: str) -> None:
    """Each command names a real subcommand with options it accepts (parsed by the CLI itself,
    without running it), real check names, and a benchmark script that exists."""
    args = shlex.split(command)
    if args[0] != "kconform":
        script = BENCHMARKS.parent / args[1]
        assert script.is_file(), f"{command}: no script {args[1]}"
        inner = args[args.index("--") + 1:] if "--" in args else []
        if inner:
            test_every_command_on_the_page_exists(shlex.join(inner))
        return
    ctx = main.make_context("kconform", args[1:], resilient_parsing=True)
    name, cmd, rest = main.resolve_command(ctx, args[1:])
    assert cmd is not None, f"{command}: no subcommand {args[1]}"
    try:
        cmd.make_context(str(name), list(rest))
    except click.ClickException as exc:
        pytest.fail(f"{command}: {exc.format_message()}")
    if "--checks" in args:
        for check in args[args.index("--checks") + 1].split(","):
            assert split_instance(check)[0] in CHECKS, f"{command}: no check {check}"
