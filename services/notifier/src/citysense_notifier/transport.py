"""An httpx transport that connects a webhook only to an address its SSRF check accepted.

Checking a URL resolves its host; if the HTTP client then resolved the host again to connect, a DNS server
answering a public address first and 127.0.0.1 next (TTL 0, "DNS rebinding") would get the check passed and the
request sent to loopback. Here each request is checked once (:func:`check_webhook_url`, all addresses must pass) and
the connection goes to those checked addresses, with no second lookup. The URL keeps its host name, so the ``Host``
header, TLS SNI and certificate verification are for the name, exactly as without pinning.

Connections are pooled per origin (scheme, host name, port) as usual; a kept-alive connection was opened to an
address that passed the same check, so reusing it is as safe as opening a new one.
"""

from __future__ import annotations

import contextvars
import ssl
from collections.abc import Collection, Sequence
from typing import Any

import httpcore
import httpx
from citysense_common.webhooks import IPAddress, IPNetwork, Resolver, check_webhook_url, resolve_host

# (host as the connection pool spells it, the addresses checked for it) for the request the current task sends.
_PINNED: contextvars.ContextVar[tuple[str, tuple[IPAddress, ...]] | None] = contextvars.ContextVar(
    "citysense_webhook_pinned", default=None)


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Opens TCP connections only to the checked addresses of the current request's host; never resolves."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Any = None) -> httpcore.AsyncNetworkStream:  # noqa: ANN401
        pinned = _PINNED.get()
        if pinned is None or pinned[0] != host:
            raise httpcore.ConnectError(f"no checked address for {host}; it is not resolved a second time")
        error: Exception | None = None
        for address in pinned[1]:
            try:
                return await self._inner.connect_tcp(str(address), port, timeout=timeout,
                                                     local_address=local_address, socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None  # a check never passes with no address
        raise error

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Any = None) -> httpcore.AsyncNetworkStream:  # noqa: ANN401
        raise httpcore.ConnectError("webhooks are not delivered over unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class PinnedTransport(httpx.AsyncBaseTransport):
    """Checks every request's URL (raising :class:`UnsafeWebhookURL`) and connects to the addresses checked.

    ``resolver`` is how host names are resolved, once per request; production leaves it at the system resolver
    (:func:`resolve_host`), unit tests pass a table.
    """

    def __init__(self, allowed: Sequence[IPNetwork], resolver: Resolver = resolve_host, *,
                 ports: Collection[int] | None = None, limits: httpx.Limits | None = None,
                 verify: ssl.SSLContext | bool = True) -> None:
        self.allowed = tuple(allowed)
        self.ports = ports
        self.resolver = resolver
        self._transport = httpx.AsyncHTTPTransport(limits=limits or httpx.Limits(), verify=verify, trust_env=False)
        # httpx builds its pool without a backend argument; every connection the pool opens takes this one.
        pool = self._transport._pool
        assert isinstance(pool, httpcore.AsyncConnectionPool)
        pool._network_backend = _PinnedBackend()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        checked = await check_webhook_url(str(request.url), self.allowed, self.resolver, self.ports)
        token = _PINNED.set((request.url.raw_host.decode("ascii"), checked.addresses))
        try:
            return await self._transport.handle_async_request(request)
        finally:
            _PINNED.reset(token)

    async def aclose(self) -> None:
        await self._transport.aclose()
