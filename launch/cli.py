"""``kconform cluster``: a reference cluster (one controller, N brokers) in the foreground.

It is the launch layer's command: it starts broker processes (``launch.reference_cluster``),
which the broker itself does not know how to do.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from launch.reference_cluster import MAX_BROKERS
from reference_broker.cli import EXIT_CONFIG_ERROR
from reference_broker.config import ConfigError, load_broker_config, parse_override


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

    from launch.broker_process import BrokerStartError
    from launch.reference_cluster import ClusterError, ReferenceCluster

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
