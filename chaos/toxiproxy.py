"""A real Toxiproxy server, started by the harness, and a control client that cannot hang.

Network faults in kconform are real: every client and broker link goes through a proxy of a
Toxiproxy server (v2.12.0, built from its Go module by ``scripts/setup``). This module

* starts it, or uses one already running (``launch.toxiproxy``);
* controls it through toxiproxy-python (:class:`ToxiproxyControl`), wrapped because that library
  keeps the server address in class attributes, sets no timeouts and ignores server errors.
  Here every call has a timeout, a 5xx answer raises, and a call that does not come back in
  time raises :class:`ToxiproxyWedged`: the control API is known to hang when a latency toxic is
  removed under heavy traffic (upstream issue #558), and a campaign must then fail loudly, not
  stall. ``reset()`` (POST /reset: every proxy enabled, every toxic removed) is the way out.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import attrs
import requests

from launch.toxiproxy import ToxiproxyError

DEFAULT_TIMEOUT_S = 5.0

# The toxic types Toxiproxy 2.12 knows, with the attributes each takes.
TOXIC_ATTRIBUTES: Mapping[str, frozenset[str]] = {
    "latency": frozenset({"latency", "jitter"}),
    "bandwidth": frozenset({"rate"}),
    "slow_close": frozenset({"delay"}),
    "timeout": frozenset({"timeout"}),
    "reset_peer": frozenset({"timeout"}),
    "slicer": frozenset({"average_size", "size_variation", "delay"}),
    "limit_data": frozenset({"bytes"}),
}


class ToxiproxyWedged(ToxiproxyError):
    """A control call did not return in time (upstream issue #558): the campaign must stop."""


# --- the control client ------------------------------------------------------------------------

_LOCK = threading.Lock()  # toxiproxy-python keeps one global server address


class _TimedRequests:
    """Stands in for the ``requests`` module inside toxiproxy-python: adds the timeout and
    turns 5xx answers and timeouts into exceptions."""

    def __init__(self) -> None:
        self.timeout_s = DEFAULT_TIMEOUT_S

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            response = requests.request(method, url, timeout=self.timeout_s, **kwargs)
        except requests.Timeout as exc:
            raise ToxiproxyWedged(
                f"Toxiproxy control call {method} {url} did not return within {self.timeout_s}s "
                "(the control API can wedge when a latency toxic is removed under load, "
                "upstream issue #558)"
            ) from exc
        except requests.ConnectionError as exc:
            raise ToxiproxyError(f"Toxiproxy control call {method} {url} failed: {exc}") from exc
        if response.status_code >= 500:
            raise ToxiproxyError(
                f"Toxiproxy answered {response.status_code} to {method} {url}: {response.text[:300]}"
            )
        return response

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        return self._send("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        return self._send("POST", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> requests.Response:
        return self._send("DELETE", url, **kwargs)


def _install_shim() -> _TimedRequests:
    import toxiproxy.api

    shim = toxiproxy.api.requests
    if not isinstance(shim, _TimedRequests):
        shim = _TimedRequests()
        toxiproxy.api.requests = shim
    return shim


@attrs.frozen
class ProxyInfo:
    name: str
    listen: str
    upstream: str
    enabled: bool


class ToxiproxyControl:
    """Proxies and toxics of one Toxiproxy server, through toxiproxy-python, safely."""

    def __init__(self, url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        host, _, port = url.removeprefix("http://").rstrip("/").rpartition(":")
        self.host = host
        self.port = int(port)
        self.timeout_s = timeout_s

    @contextmanager
    def _session(self) -> Iterator[Any]:
        from toxiproxy import Toxiproxy
        from toxiproxy.api import APIConsumer

        with _LOCK:
            shim = _install_shim()
            shim.timeout_s = self.timeout_s
            APIConsumer.host, APIConsumer.port = self.host, self.port
            try:
                yield Toxiproxy()
            except ToxiproxyError:
                raise
            except Exception as exc:  # toxiproxy-python's ProxyExists / NotFound / InvalidToxic
                raise ToxiproxyError(f"Toxiproxy refused the request: {type(exc).__name__}: {exc}") from exc

    def version(self) -> str:
        with self._session() as server:
            return str(server.version().decode())

    def create_proxy(self, name: str, upstream: str, listen: str = "127.0.0.1:0") -> ProxyInfo:
        with self._session() as server:
            proxy = server.create(upstream=upstream, name=name, listen=listen, enabled=True)
            return ProxyInfo(proxy.name, proxy.listen, proxy.upstream, proxy.enabled)

    def proxies(self) -> dict[str, ProxyInfo]:
        with self._session() as server:
            return {
                name: ProxyInfo(p.name, p.listen, p.upstream, p.enabled)
                for name, p in server.proxies().items()
            }

    def _proxy(self, server: Any, name: str) -> Any:
        proxy = server.get_proxy(name)
        if proxy is None:
            raise ToxiproxyError(f"no proxy named {name!r}")
        return proxy

    def set_enabled(self, name: str, enabled: bool) -> None:
        """Disabling a proxy closes its connections and refuses new ones."""
        with self._session() as server:
            proxy = self._proxy(server, name)
            if enabled:
                proxy.enable()
            else:
                proxy.disable()

    def add_toxic(
        self, proxy_name: str, toxic_type: str, attributes: Mapping[str, int | float],
        stream: str = "downstream", toxicity: float = 1.0, name: str | None = None,
    ) -> str:
        """Add a toxic; returns its name. Unknown types or attributes are refused up front."""
        allowed = TOXIC_ATTRIBUTES.get(toxic_type)
        if allowed is None:
            raise ToxiproxyError(f"unknown toxic type {toxic_type!r}; known: {sorted(TOXIC_ATTRIBUTES)}")
        unknown = set(attributes) - allowed
        if unknown:
            raise ToxiproxyError(f"toxic {toxic_type} has no attribute(s) {sorted(unknown)}")
        if stream not in ("upstream", "downstream"):
            raise ToxiproxyError(f"stream must be upstream or downstream, not {stream!r}")
        toxic_name = name or f"{toxic_type}_{stream}"
        with self._session() as server:
            self._proxy(server, proxy_name).add_toxic(
                type=toxic_type, attributes=dict(attributes), stream=stream,
                toxicity=toxicity, name=toxic_name,
            )
        return toxic_name

    def remove_toxic(self, proxy_name: str, toxic_name: str) -> None:
        with self._session() as server:
            self._proxy(server, proxy_name).destroy_toxic(toxic_name)

    def toxics(self, proxy_name: str) -> dict[str, dict[str, Any]]:
        with self._session() as server:
            return {
                name: {"type": t.type, "stream": t.stream, "toxicity": t.toxicity,
                       "attributes": t.attributes}
                for name, t in self._proxy(server, proxy_name).toxics().items()
            }

    def delete_proxy(self, name: str) -> None:
        with self._session() as server:
            self._proxy(server, name).destroy()

    def reset(self) -> None:
        """Enable every proxy and remove every toxic (the way out of any fault)."""
        with self._session() as server:
            server.reset()

    def delete_all(self) -> None:
        with self._session() as server:
            server.destroy_all()
