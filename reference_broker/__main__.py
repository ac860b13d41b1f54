"""``python -m reference_broker``: the same as ``kconform broker``."""

from reference_broker.cli import broker_command

if __name__ == "__main__":
    broker_command(prog_name="python -m reference_broker")
