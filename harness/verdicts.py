"""The words every kconform command ends with, and their colour on a terminal.

A whole run ends in one verdict word: VALID (every claim held), INVALID (one broke), and, where
no verdict can be given, NOT JUDGED (a check asked for could not run), NOT EXERCISED (nothing
was written, so nothing was tested) or INTERRUPTED (partial); a chaos campaign may also end in
CLIENT FAULT (the broke claim is the client's, the broker held). One check's result is pass,
FAIL or skip. docs/commands.md lists them with every command's exit codes.
"""

from __future__ import annotations

import os

import click

COLOURS = {"VALID": "green", "INVALID": "red", "CLIENT FAULT": "magenta", "NOT JUDGED": "yellow",
           "NOT EXERCISED": "yellow", "INTERRUPTED": "yellow"}


def verdict_word(valid: bool) -> str:
    return "VALID" if valid else "INVALID"


def colour_verdict(text: str) -> str:
    """``text`` with the verdict word that starts any of its lines in colour and bold (click
    drops the colour when the output is not a terminal; NO_COLOR turns it off everywhere)."""
    if os.environ.get("NO_COLOR"):
        return text
    out = []
    for line in text.split("\n"):
        # Longest first: "INVALID" must not be read as "VALID" plus a prefix, nor "NOT JUDGED" as "NOT".
        word = next((w for w in sorted(COLOURS, key=len, reverse=True) if line.startswith(w)), None)
        out.append(line if word is None else click.style(word, fg=COLOURS[word], bold=True) + line[len(word):])
    return "\n".join(out)
