"""The ``kconform`` command group and the commands of the layers below chaos.

The program itself (the ``kconform`` entry point, ``chaos.entry``) is ``chaos.cli:main``: this group plus
``kconform chaos`` and ``kconform matrix``, added there because chaos sits above the harness and the harness never
imports it.
"""

from __future__ import annotations

import click

from harness.check_cli import check_command
from harness.conformance.cli import conform_command
from harness.roundtrip import roundtrip_command
from launch.cli import cluster_command
from reference_broker.cli import broker_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kconform")
def main() -> None:
    """kconform: a Kafka reference broker and a conformance and chaos harness.

    Run `kconform COMMAND --help` for the options of each command.
    """


main.add_command(broker_command)
main.add_command(cluster_command)
main.add_command(roundtrip_command)
main.add_command(check_command)
main.add_command(conform_command)


if __name__ == "__main__":  # ``python -m harness.cli``: how a parallel sweep starts its parts
    main()
