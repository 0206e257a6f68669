"""What a client may hold on the server, beyond what uvicorn bounds by itself: how long it may take to send a
request's headers, how many connections it may keep, and which Host and Origin a request may name.

uvicorn has a keep-alive timeout but no deadline for headers (a slowloris client trickling bytes keeps its
connection forever) and no Host check; both are small additions to its own classes here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import resource

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Seconds from a connection's opening, or from a request's first byte, to the end of its headers.
HEADER_SECONDS = 10.0
# Seconds a request may take to send its whole body once its headers arrived (408 after).
BODY_SECONDS = 60.0
# Open connections beyond which uvicorn answers 503 at once; never more than the file descriptors allow.
MAX_CONNECTIONS = 4096
# File descriptors kept for everything that is not a client connection (models, logs, the listener).
RESERVED_DESCRIPTORS = 64
# The content types a web page may POST to another site without the browser asking first (CORS "simple requests").
CROSS_SITE_TYPES = frozenset({"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"})


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, closing a connection whose request headers are not complete HEADER_SECONDS after the
    connection opened or the request's first byte came."""

    _header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_deadline = self.loop.call_later(HEADER_SECONDS, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def connection_limit() -> int:
    """Connections the server takes at once: MAX_CONNECTIONS, or fewer when the process may open fewer files.

    The soft limit on open files is raised to the hard one first (1024 by default on Linux, while the hard limit is
    usually far higher), so that a flood of connections meets uvicorn's 503, not a failing accept()."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        wanted = MAX_CONNECTIONS + RESERVED_DESCRIPTORS
        raised = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
        if raised > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
    return max(1, min(MAX_CONNECTIONS, soft - RESERVED_DESCRIPTORS))


def allowed_hosts(bound_host: str) -> frozenset[str] | None:
    """The Host header values a server bound to `bound_host` answers: its own address, plus the loopback names
    when it listens on loopback (a DNS-rebinding page names its own domain and is refused); None (any) when it
    listens on every interface, where the names it is reached by cannot be known."""
    try:
        address = ipaddress.ip_address(bound_host)
    except ValueError:  # a name such as localhost
        return frozenset({bound_host.lower()})
    if address.is_unspecified:
        return None
    shown = f"[{address}]" if address.version == 6 else str(address)
    if address.is_loopback:
        return frozenset({shown, "localhost", "127.0.0.1", "[::1]"})
    return frozenset({shown})


def _host_name(authority: str) -> str:
    """The host of a Host header or an Origin's authority, without the port: "[::1]:8000" -> "[::1]"."""
    authority = authority.strip().lower()
    if authority.startswith("["):
        return authority[: authority.find("]") + 1]
    return authority.rsplit(":", 1)[0]


class RequestGuard:
    """ASGI middleware that refuses, as JSON 4xx, requests a browser could be made to send from another site: a
    Host that is not this server (421, DNS rebinding), and a POST whose Origin is another site or whose content
    type is one a web form can send without asking (403, 415). Clients such as tritonclient and curl send neither
    Origin nor a form content type."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str] | None) -> None:
        self.app, self.hosts = app, hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(Headers(scope=scope), scope["method"])
            if refusal is not None:
                message, status = refusal
                await JSONResponse({"error": message}, status_code=status)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, headers: Headers, method: str) -> tuple[str, int] | None:
        host = headers.get("host", "")
        if self.hosts is not None and _host_name(host) not in self.hosts:
            return (
                f"This server answers to {', '.join(sorted(self.hosts))}, not Host {host!r}; serve with "
                "--host 0.0.0.0 (every interface, any name) to be reached under other names.",
                421,
            )
        if method != "POST":
            return None
        origin = headers.get("origin")
        if origin is not None and _host_of_origin(origin) != host.strip().lower():
            return f"Cross-site requests are refused (Origin {origin!r}); call the server directly.", 403
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type in CROSS_SITE_TYPES:
            return (
                f"Content-Type {media_type} is refused (a web page could send it from another site); send "
                "application/json, or application/octet-stream with binary tensors.",
                415,
            )
        return None


def _host_of_origin(origin: str) -> str | None:
    """An Origin's host:port as a Host header writes it ("null" and malformed origins match nothing)."""
    scheme, separator, authority = origin.strip().lower().partition("://")
    return authority if separator and scheme in ("http", "https") else None
