"""The ``kconform`` program's entry point: the command group of ``chaos.cli``, started with
Hypothesis's storage out of the user's current directory.

Hypothesis keeps caches (unicode tables, constants, examples) under ``.hypothesis/`` in the
current directory, and it fills some of them while modules that kconform imports are loaded
(kio defines Hypothesis strategies at import). A command-line tool must not leave that behind
wherever the user runs it, so before anything is imported this points Hypothesis at a temporary
directory (also for the processes kconform starts), removed when the program ends; set
``HYPOTHESIS_STORAGE_DIRECTORY`` to keep one of your own.
"""

from __future__ import annotations

import os
import shutil
import tempfile

STORAGE_ENV = "HYPOTHESIS_STORAGE_DIRECTORY"


def main() -> None:
    scratch = None
    if not os.environ.get(STORAGE_ENV):
        scratch = tempfile.mkdtemp(prefix="kconform-hypothesis-")
        os.environ[STORAGE_ENV] = scratch
    try:
        from chaos.cli import main as cli

        cli(prog_name="kconform")
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":  # ``python -m chaos.entry``: how a sweep starts each campaign
    main()
