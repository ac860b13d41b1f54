"""Who led each partition, with which ISR and high watermark, while a campaign ran.

A report has to explain an outage or a violation, and most of those are stories about
leadership: the leader was cut off, the ISR shrank to the leader alone, a new leader was elected
with a shorter log, the high watermark went back. The clients cannot tell that story (they see
errors and retries), so a :class:`PartitionObserver` thread asks the brokers themselves, around
every proxy (at their real addresses, so a network fault between clients and brokers does not
blind it), a few times a second:

- Metadata at every running broker; the view with the newest leader epoch gives the leader, its
  epoch and the ISR (a broker cut off from the controller keeps an older view);
- ListOffsets LATEST (read uncommitted) at that leader: its high watermark.

Each change is recorded in the history as a ``partition-state`` observation of the process
``observer`` (docs/history-format.md); samples that change nothing are not recorded. A paused
broker is not asked (it would only make the sample late). No checker judges these observations:
they are what the brokers said, for the report's timeline, not evidence of what clients saw.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import attrs

from chaos.environment import Environment
from harness.history.write import Recorder
from harness.session import LIST_OFFSETS, SessionError, WireSession
from harness.targets.proxied import broker_name

PROCESS = "observer"
INTERVAL_S = 0.25  # between samples; each asks every broker once and every leader once
REQUEST_TIMEOUT_S = 1.0  # a broker that does not answer in time is skipped in this sample


@attrs.frozen
class Sample:
    """One partition as the brokers describe it at one moment."""

    leader: str | None
    leader_epoch: int
    isr: tuple[str, ...]
    high_watermark: int | None


class PartitionObserver(threading.Thread):
    """Samples every partition of ``topic`` until :meth:`stop`; records each change."""

    def __init__(self, env: Environment, history: Recorder, topic: str, partitions: int,
                 interval_s: float = INTERVAL_S) -> None:
        super().__init__(name="kconform-observer", daemon=True)
        self.env = env
        self.history = history
        self.topic = topic
        self.partitions = partitions
        self.interval_s = interval_s
        self.samples = 0
        self._stop_event = threading.Event()
        self._sessions: dict[str, WireSession] = {}
        self._last: dict[int, Sample] = {}

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                self.sample()
                self._stop_event.wait(self.interval_s)
        finally:
            for session in self._sessions.values():
                session.close()
            self._sessions.clear()

    def stop(self) -> None:
        """Stop after the sample under way (at most a request timeout per broker)."""
        self._stop_event.set()
        self.join(timeout=10 * REQUEST_TIMEOUT_S)

    def sample(self) -> None:
        """Ask once; record what changed since the last sample."""
        addresses = self.env.target.node_addresses()
        views: dict[int, tuple[int, str | None, tuple[str, ...]]] = {}
        for node, address in addresses.items():
            if not self._running(node):
                continue
            for partition, view in self._metadata(address).items():
                if partition not in views or view[0] > views[partition][0]:
                    views[partition] = view
        self.samples += 1
        for partition in range(self.partitions):
            if partition not in views:
                continue
            epoch, leader, isr = views[partition]
            at = addresses.get(leader) if leader is not None else None
            hw = self._high_watermark(at, partition) if at is not None else None
            now = Sample(leader, epoch, isr, hw)
            if self._last.get(partition) == now:
                continue
            self._last[partition] = now
            self.history.observe(PROCESS, "partition-state", topic=self.topic, partition=partition,
                                 leader=leader, leader_epoch=epoch, isr=list(isr), high_watermark=hw)

    # --- asking ----------------------------------------------------------------------------------

    def _running(self, node: str) -> bool:
        try:
            return self.env.running(node)
        except Exception:  # noqa: BLE001 - a node being replaced: not asked this time
            return False

    def _session(self, address: str) -> WireSession:
        session = self._sessions.get(address)
        if session is None:
            session = self._sessions[address] = WireSession(address, timeout_s=REQUEST_TIMEOUT_S,
                                                            client_id="kconform-observer")
        return session

    def _forget(self, address: str) -> None:
        session = self._sessions.pop(address, None)
        if session is not None:
            session.close()

    def _metadata(self, address: str) -> Mapping[int, tuple[int, str | None, tuple[str, ...]]]:
        """partition -> (leader epoch, leader, ISR) as the broker at ``address`` sees them."""
        try:
            response = self._session(address).metadata([self.topic])
        except (SessionError, OSError):
            self._forget(address)
            return {}
        out = {}
        for t in response.topics:
            if t.name != self.topic:
                continue
            for p in t.partitions:
                leader = broker_name(int(p.leader_id)) if int(p.leader_id) >= 0 else None
                out[int(p.partition_index)] = (int(p.leader_epoch), leader,
                                               tuple(broker_name(int(r)) for r in p.isr_nodes))
        return out

    def _high_watermark(self, address: str, partition: int) -> int | None:
        try:
            response = self._session(address).call(LIST_OFFSETS, {
                "replica_id": -1, "isolation_level": 0,
                "topics": [{"name": self.topic, "partitions": [
                    {"partition_index": partition, "current_leader_epoch": -1, "timestamp": -1}]}]},
                address=address)
        except (SessionError, OSError):
            self._forget(address)
            return None
        for t in response.topics:
            for p in t.partitions:
                if int(p.partition_index) == partition and int(p.error_code) == 0:
                    return int(p.offset)
        return None
