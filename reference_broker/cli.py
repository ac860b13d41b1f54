"""``kconform broker`` / ``python -m reference_broker``: run one reference broker in the foreground."""

from __future__ import annotations

import asyncio
import errno
import logging
import sys
from pathlib import Path

import click

from reference_broker.cluster import MAX_BROKERS
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
    from reference_broker.server import run_broker

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


@click.command("cluster")
@click.option("--brokers", type=click.IntRange(1, MAX_BROKERS), default=3, show_default=True,
              help="Number of broker processes (plus one controller process).")
@click.option(
    "--override", "overrides", multiple=True, metavar="KEY=VALUE",
    help="Set one broker key on every node; repeatable (e.g. broker.session.timeout.ms=1500).",
)
@click.option(
    "--data-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
    help="Keep the nodes' data and logs here (default: a temporary directory removed on exit).",
)
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
              help="Verbosity of the nodes' logs (each node logs to <its directory>/broker.log).")
def cluster_command(
    brokers: int, overrides: tuple[str, ...], data_dir: Path | None, log_level: str
) -> None:
    """Run a reference cluster in the foreground: one controller and N brokers on loopback.

    It prints where every node listens and keeps its data, then a line
    `bootstrap.servers=HOST:PORT,...` once every broker is up and every partition of the
    internal topics has a leader. Ctrl-C (or SIGTERM) stops every process and, unless
    --data-dir was given, removes the data. See docs/cluster.md.

    \b
    Examples:
      kconform cluster --brokers 3
      kconform cluster --brokers 5 --override broker.session.timeout.ms=3000 --data-dir ./c1
    """
    import signal

    from reference_broker.cluster import ClusterError, ReferenceCluster
    from reference_broker.process import BrokerStartError

    try:
        pairs = [parse_override(item) for item in overrides]
        load_broker_config({}, pairs)  # unknown keys and bad values fail here, before any start
        settings = dict(pairs)
        cluster = ReferenceCluster(brokers, settings, base_dir=data_dir, log_level=log_level.upper())
    except (ConfigError, ValueError) as exc:
        click.echo(f"kconform cluster: configuration error: {exc}", err=True)
        sys.exit(EXIT_CONFIG_ERROR)

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Also SIGINT: a shell starts background jobs with SIGINT ignored, and Ctrl-C must work.
    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)
    try:
        with cluster:
            try:
                cluster.wait_ready()
                click.echo(cluster.describe())
                if data_dir is None:
                    click.echo("  (the data is removed when the cluster stops)")
                click.echo(f"bootstrap.servers={cluster.bootstrap}")
                sys.stdout.flush()
                while True:
                    signal.pause()
            except KeyboardInterrupt:
                click.echo("stopping the cluster", err=True)
    except (ClusterError, BrokerStartError) as exc:
        click.echo(f"kconform cluster: {exc}", err=True)
        sys.exit(EXIT_CONFIG_ERROR)  # could not run, as for every command
    except KeyboardInterrupt:  # a second Ctrl-C while stopping: everything was killed
        pass
