"""``kconform broker`` / ``python -m reference_broker``: run one reference broker in the foreground.

(``kconform cluster``, which launches several broker processes, is ``launch.cli``.)
"""

from __future__ import annotations

import asyncio
import errno
import logging
import sys
from pathlib import Path

import click

from reference_broker.config import (
    BrokerConfig,
    ConfigError,
    load_broker_config,
    parse_override,
    parse_properties,
)

EXIT_CONFIG_ERROR = 2


def load_config(config_file: Path | None, overrides: tuple[str, ...]) -> BrokerConfig:
    """Build the broker config from ``--config`` and ``--override``; raises ConfigError."""
    file_values: dict[str, str] = {}
    if config_file is not None:
        try:
            text = config_file.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read --config {config_file}: {exc.strerror}") from None
        file_values = parse_properties(text, str(config_file))
    return load_broker_config(file_values, [parse_override(item) for item in overrides])


@click.command("broker")
@click.option(
    "--config", "config_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
    help="A server.properties-style file with Kafka broker keys.",
)
@click.option(
    "--override", "overrides", multiple=True, metavar="KEY=VALUE",
    help="Set one broker key; repeatable; wins over --config (like kafka-server-start --override).",
)
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
              help="Verbosity of the broker log on stderr.")
def broker_command(config_file: Path | None, overrides: tuple[str, ...], log_level: str) -> None:
    """Start one reference broker node in the foreground.

    Configuration uses Kafka's broker keys, defaults and precedence (see docs/configuration.md).
    The broker prints one "ready" line on stdout once it accepts connections, and shuts down
    cleanly (flush, close) on Ctrl-C or SIGTERM.

    \b
    Examples:
      kconform broker
      kconform broker --override listeners=PLAINTEXT://127.0.0.1:0 --override log.dirs=/tmp/b0
      kconform broker --config server.properties --override log.retention.ms=60000
    """
    from reference_broker.allocator import tune_allocator
    from reference_broker.drivers.broker_server import run_broker

    tune_allocator()

    logging.basicConfig(
        level=log_level.upper(), stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = load_config(config_file, overrides)
        asyncio.run(run_broker(config))
    except ConfigError as exc:
        click.echo(f"kconform broker: configuration error: {exc}", err=True)
        sys.exit(EXIT_CONFIG_ERROR)
    except OSError as exc:
        click.echo(f"kconform broker: cannot start: {_start_error(exc, overrides)}", err=True)
        sys.exit(EXIT_CONFIG_ERROR)


def _start_error(exc: OSError, overrides: tuple[str, ...]) -> str:
    """What went wrong, in the configuration's terms where it is a configuration problem."""
    if exc.errno == errno.EADDRINUSE:
        given = ", ".join(o for o in overrides if o.startswith(("listeners=", "controller.listener")))
        where = given or "the listeners of the configuration"
        return (f"a listener's port is already in use ({exc.strerror}; {where}): stop what holds it, or choose "
                "another port (port 0 picks a free one)")
    return str(exc)
