"""``python -m reference_broker``: the same as ``kconform broker``."""

import faulthandler
import signal
import sys

# A launcher whose broker does not start in time asks for every thread's stack (SIGUSR1) before
# it kills it, so the reason lands in the broker's log (launch/broker_process.py).
faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)

from reference_broker.cli import broker_command  # noqa: E402 - after the handler: an import may be what hangs

if __name__ == "__main__":
    broker_command(prog_name="python -m reference_broker")
