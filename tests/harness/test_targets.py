"""Targets start, declare their capabilities, and leave nothing behind (processes, ports, dirs)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from harness.session import WireSession, make_batch
from harness.targets import (
    CONSUMER_GROUPS,
    DURABLE_STORAGE,
    IDEMPOTENCE,
    PROCESS_CONTROL,
    REPLICATION,
    TRANSACTIONS,
    ExternalTarget,
    ReferenceTarget,
    TansuTarget,
    TargetError,
    capabilities_from_api_versions,
    make_target,
)
from harness.testing.faulty import FaultyTarget, drop_every
from harness.wire_transactions import READ_COMMITTED, WireTransaction
from launch.broker_process import BrokerProcess
from launch.tansu import TansuNotInstalled, find_tansu_binary
from reference_broker.records import iter_records, scan_valid_prefix
from tests.helpers import pid_exists, skip_unless


def port_closed(bootstrap: str) -> bool:
    host, _, port = bootstrap.rpartition(":")
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, int(port))) != 0


def test_reference_target_starts_probes_and_removes_everything() -> None:
    """A reference target answers, declares process control and durability, and on exit its
    process, port and data directory are gone."""
    with ReferenceTarget() as target:
        process = target.process
        assert process is not None and process.pid is not None
        pid, data_dir, bootstrap = process.pid, process.data_dir, target.bootstrap
        assert {PROCESS_CONTROL, DURABLE_STORAGE, CONSUMER_GROUPS, IDEMPOTENCE, TRANSACTIONS} <= target.capabilities
        assert REPLICATION not in target.capabilities
        assert target.missing([REPLICATION, IDEMPOTENCE]) == [REPLICATION]
    assert not pid_exists(pid) and not data_dir.exists() and port_closed(bootstrap)


def test_reference_target_is_removed_when_the_block_is_interrupted() -> None:
    """Ctrl-C inside the block still kills the broker and removes its directory."""
    with pytest.raises(KeyboardInterrupt):
        with ReferenceTarget() as target:
            assert target.process is not None
            pid, data_dir = target.process.pid, target.process.data_dir
            raise KeyboardInterrupt
    assert pid is not None and not pid_exists(pid) and not data_dir.exists()


def test_reference_target_restart_keeps_the_address(tmp_path: Path) -> None:
    """Process control: a restart comes back on the same bootstrap address."""
    with ReferenceTarget(data_dir=tmp_path / "ref") as target:
        before = target.bootstrap
        target.restart()
        assert target.bootstrap == before
        with WireSession(target.bootstrap) as session:
            assert session.versions


def test_tansu_target_declares_what_it_offers() -> None:
    """Tansu gets process control from the launcher, protocol features from ApiVersions, and no
    durable storage (memory only); its process is gone afterwards."""
    skip_unless(find_tansu_binary, TansuNotInstalled)
    with TansuTarget() as target:
        caps = target.capabilities
        pid = target._process.pid if target._process else None
        assert PROCESS_CONTROL in caps and IDEMPOTENCE in caps and DURABLE_STORAGE not in caps
        assert "tansu" in str(target.describe().get("version"))
    assert pid is not None and not pid_exists(pid)


def test_external_target_probes_a_running_broker(broker: BrokerProcess) -> None:
    """An external target launches nothing, probes ApiVersions and adds declared capabilities."""
    with ExternalTarget(broker.bootstrap, extra_capabilities=[REPLICATION]) as target:
        assert target.bootstrap == broker.bootstrap
        assert {IDEMPOTENCE, REPLICATION} <= target.capabilities
        assert PROCESS_CONTROL not in target.capabilities
        with pytest.raises(TargetError, match="no process control"):
            target.restart()
    assert broker.running


def test_external_target_errors_name_the_problem() -> None:
    """Bad or unreachable bootstrap addresses and unknown names give clear TargetErrors."""
    with pytest.raises(TargetError, match="not HOST:PORT"):
        ExternalTarget("localhost")
    with pytest.raises(TargetError, match="needs --bootstrap"):
        make_target("external")
    with pytest.raises(TargetError, match="launched by the harness"):
        make_target("reference", bootstrap="127.0.0.1:9092")
    with pytest.raises(TargetError, match="unknown target"):
        make_target("redpanda")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]
    with pytest.raises(TargetError, match="does not answer ApiVersions"):
        ExternalTarget(f"127.0.0.1:{free}").start()


def test_capabilities_follow_api_versions() -> None:
    """Protocol capabilities are read from the ApiVersions ranges."""
    assert capabilities_from_api_versions({22: (0, 4)}) == {IDEMPOTENCE}
    groups = {k: (0, 5) for k in (8, 9, 10, 11, 12, 13, 14)}
    assert CONSUMER_GROUPS in capabilities_from_api_versions(groups)
    assert CONSUMER_GROUPS not in capabilities_from_api_versions({k: v for k, v in groups.items() if k != 14})
    assert "topic-ids" in capabilities_from_api_versions({3: (0, 12), 1: (4, 13)})
    assert "topic-ids" not in capabilities_from_api_versions({3: (0, 12), 1: (4, 12)})


def test_faulty_target_lies_and_stops_its_proxy() -> None:
    """The drop proxy hides offset 99 from fetches, and its listener is closed on exit."""
    with FaultyTarget("drop") as target:
        bootstrap = target.bootstrap
        with WireSession(bootstrap) as session:
            assert session.create_topic("lossy", 1) == "NONE"
            for _ in range(3):
                session.produce("lossy", 0, make_batch([b"v"] * 50))
            fetched = session.fetch("lossy", 0, 90, max_wait_ms=100)
        offsets = [r.offset for r in fetched.records if r.offset >= 90]
        assert 98 in offsets and 100 in offsets and 99 not in offsets
    assert port_closed(bootstrap)


def test_the_aborted_proxy_hides_aborted_transactions_from_read_committed_fetches() -> None:
    """Behind faulty-aborted, a read_committed Fetch lists no aborted transaction where the broker
    behind it lists one; read_uncommitted answers are passed on as they are."""
    with FaultyTarget("aborted") as target:
        with WireSession(target.bootstrap) as session:
            assert session.create_topic("txns", 1) == "NONE"
            txn = WireTransaction(session, "faulty-aborted-txn")
            assert txn.init() == "NONE" and txn.add_partitions([("txns", 0)]) == {("txns", 0): "NONE"}
            assert txn.send("txns", 0, [b"aborted"]).error == "NONE" and txn.end(commit=False) == "NONE"
            lied = session.fetch("txns", 0, 0, isolation=READ_COMMITTED, max_wait_ms=100)
            plain = session.fetch("txns", 0, 0)
        with WireSession(str(target.describe()["upstream"])) as upstream:
            truth = upstream.fetch("txns", 0, 0, isolation=READ_COMMITTED, max_wait_ms=100)
    assert truth.aborted == ((txn.producer_id, 0),) and truth.last_stable_offset == 2
    assert lied.aborted == () and [r.offset for r in lied.records] == [0]
    assert plain.aborted is None and plain.markers == ((1, "ABORT"),)


def test_drop_every_keeps_the_batch_span() -> None:
    """Dropping records keeps the batch's first and last offsets, so consumers move past it."""
    batch = bytearray(make_batch([f"r{i}".encode() for i in range(10)]))
    batch[0:8] = (95).to_bytes(8, "big")  # base offset 95: offsets 95..104
    from reference_broker.records import crc_is_valid, parse_header

    assert crc_is_valid(batch, parse_header(batch))  # the base offset is outside the CRC
    out = drop_every(bytes(batch), 100)
    headers, _ = scan_valid_prefix(out)
    assert [(h.base_offset, h.last_offset) for h in headers] == [(95, 104)]
    assert [r.offset for r in iter_records(out, headers[0])] == [95, 96, 97, 98, 100, 101, 102, 103, 104]
