"""The real Toxiproxy server, started by the harness, and the wrapped control client."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from chaos.toxiproxy import ToxiproxyControl, ToxiproxyWedged
from launch.toxiproxy import ToxiproxyError, ToxiproxyServer
from tests.chaos.conftest import require_toxiproxy

pytestmark = pytest.mark.chaos


class _Echo(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo() -> Iterator[str]:
    server = _Echo(("127.0.0.1", 0), _EchoHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def control() -> Iterator[ToxiproxyControl]:
    require_toxiproxy()
    with ToxiproxyServer(seed=7) as server:
        yield ToxiproxyControl(server.url)


def _round_trip(address: str, payload: bytes = b"ping", timeout_s: float = 2.0) -> bytes:
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
        sock.sendall(payload)
        return sock.recv(65536)


def test_proxy_forwards_and_latency_toxic_delays(control: ToxiproxyControl, echo: str) -> None:
    """A proxy carries bytes to its upstream; a latency toxic on it delays the answer."""
    proxy = control.create_proxy("echo", echo)
    assert proxy.listen != "127.0.0.1:0"
    assert _round_trip(proxy.listen) == b"ping"
    control.add_toxic("echo", "latency", {"latency": 300, "jitter": 0})
    started = time.monotonic()
    assert _round_trip(proxy.listen) == b"ping"
    assert time.monotonic() - started >= 0.25
    assert set(control.toxics("echo")) == {"latency_downstream"}


def test_a_toxic_with_a_toxicity_hits_a_share_of_the_connections(control: ToxiproxyControl, echo: str) -> None:
    """Toxicity is drawn per connection: with 0.5, some of 20 connections are delayed and some
    are not (the delayed-end-txn campaign relies on it for requests held on one connection and
    resent on another)."""
    proxy = control.create_proxy("echo", echo)
    control.add_toxic("echo", "latency", {"latency": 300, "jitter": 0}, toxicity=0.5)
    times = []
    for _ in range(20):
        started = time.monotonic()
        assert _round_trip(proxy.listen) == b"ping"
        times.append(time.monotonic() - started)
    slow = sum(t >= 0.25 for t in times)
    assert 0 < slow < len(times), times


def test_disabled_proxy_refuses_and_reset_restores(control: ToxiproxyControl, echo: str) -> None:
    """Disabling a proxy refuses connections; reset enables it and removes every toxic."""
    proxy = control.create_proxy("echo", echo)
    control.add_toxic("echo", "timeout", {"timeout": 0})  # black hole
    control.set_enabled("echo", False)
    with pytest.raises(OSError):
        _round_trip(proxy.listen)
    control.reset()
    assert control.proxies()["echo"].enabled
    assert control.toxics("echo") == {}
    assert _round_trip(proxy.listen) == b"ping"


def test_black_hole_toxic_swallows_traffic(control: ToxiproxyControl, echo: str) -> None:
    """A timeout toxic with timeout 0 holds the data: nothing comes back."""
    proxy = control.create_proxy("echo", echo)
    control.add_toxic("echo", "timeout", {"timeout": 0}, stream="upstream")
    with pytest.raises(socket.timeout):
        _round_trip(proxy.listen, timeout_s=0.5)


def test_bad_requests_raise_clear_errors(control: ToxiproxyControl, echo: str) -> None:
    """Unknown proxies, toxic types and attributes are refused with a message naming them."""
    with pytest.raises(ToxiproxyError, match="no proxy named 'ghost'"):
        control.set_enabled("ghost", False)
    control.create_proxy("echo", echo)
    with pytest.raises(ToxiproxyError, match="unknown toxic type"):
        control.add_toxic("echo", "meteor", {})
    with pytest.raises(ToxiproxyError, match="no attribute"):
        control.add_toxic("echo", "latency", {"lateness": 5})
    with pytest.raises(ToxiproxyError, match="refused"):
        control.create_proxy("echo", echo)  # exists already


def test_a_control_api_that_never_answers_is_reported_as_wedged() -> None:
    """A control call that gets no answer raises ToxiproxyWedged after the timeout instead of
    hanging (the upstream #558 failure mode)."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections, never answers
    try:
        control = ToxiproxyControl(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout_s=0.5)
        started = time.monotonic()
        with pytest.raises(ToxiproxyWedged, match="#558"):
            control.proxies()
        assert time.monotonic() - started < 5
    finally:
        silent.close()


def test_server_process_is_gone_after_the_context(echo: str) -> None:
    """The harness's Toxiproxy server stops with its context, leaving no process."""
    require_toxiproxy()
    with ToxiproxyServer() as server:
        pid = server.pid
        assert pid is not None
        assert ToxiproxyControl(server.url).version()
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(pid, 0)
