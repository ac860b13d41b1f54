"""The launch layer: every process kconform starts, and what can be done to it.

Between the broker and the harness: it starts reference broker processes and clusters
(``broker_process``, ``reference_cluster``), Apache Kafka from its Maven Central jars
(``kafka_jars``, ``kafka_cluster``), Tansu (``tansu``) and the Toxiproxy server (``toxiproxy``),
each in a process group of its own with the stop, kill, pause and resume a fault needs
(``child_process``), on free loopback ports (``ports``). It imports the reference broker (for
its configuration and wire client) and nothing of the harness or chaos, which use it; an
import-linter contract says so (docs/architecture.md).
"""
