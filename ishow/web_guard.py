"""Who may talk to the HTTP server: Host and Origin checks, token rules. Pure policy plus one aiohttp middleware.

Threat model: the loopback port is reachable by every web page the streamer opens. A page on another origin can
send "simple" POSTs without a CORS preflight and open websockets (no same-origin policy for them), and with DNS
rebinding (its own host name resolving to 127.0.0.1) it can even read the answers. So:

- **Host**: every request (pages included) must name this server: ``127.0.0.1``/``localhost``/``[::1]`` (or any
  loopback IP literal) at the port the connection arrived on, ``server.host``, or an entry of
  ``server.allowed_hosts``. When ``server.host`` is a wildcard (``0.0.0.0``/``::``), any IP literal is accepted as
  well, at any port (a container's port may be published as another): an IP literal cannot be rebound, only a name
  can. Anything else → 421 with a JSON reason.
- **Origin**: a request or websocket upgrade that carries ``Origin`` must be same-origin (``http://`` + the Host it
  was sent to) or listed in ``server.allowed_origins``; otherwise 403. ``Origin: null`` (sandboxed frames,
  ``file://`` pages) is refused. Requests without ``Origin`` (curl, bots, local tools) are not browser requests
  made on a page's behalf and pass.
- No CORS headers are ever sent, so other origins can neither read answers nor make non-simple requests.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import structlog

if TYPE_CHECKING:  # aiohttp stays out of config loading (``ishow bench`` imports config without it)
    from aiohttp import web
    from aiohttp.typedefs import Middleware

log = structlog.get_logger(__name__)

MIN_REMOTE_TOKEN_CHARS = 16
REFUSAL_LOG_INTERVAL_S = 60.0
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*$")
_DEFAULT_PORTS = {"http": 80, "https": 443}

Handler = Callable[["web.Request"], Awaitable["web.StreamResponse"]]


def new_token() -> str:
    """A random token for ``server.token`` (43 URL-safe characters, 256 bits)."""
    return secrets.token_urlsafe(32)


def token_problem(token: str, loopback: bool) -> str | None:
    """Why ``token`` is not acceptable (the message never contains the token), or None."""
    if not token.isascii() or not token.isprintable() or " " in token:
        return "must be printable ASCII without spaces (it travels in an HTTP header)"
    if not loopback and len(token) < MIN_REMOTE_TOKEN_CHARS:
        return (
            f"too short: {len(token)} characters; off loopback at least {MIN_REMOTE_TOKEN_CHARS} are required "
            "(`ishow token` prints a random one)"
        )
    return None


def split_host(value: str) -> tuple[str, int | None] | None:
    """``Host`` header (or ``allowed_hosts`` entry) → (lower-case name without brackets, port or None); None when
    malformed."""
    value = value.strip().lower()
    if not value or any(c in value for c in "/\\@?# \t"):
        return None
    port: int | None = None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                return None
            port = _port(rest[1:])
            if port is None:
                return None
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            return None
        return name, port
    name, sep, port_text = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
    if sep:
        port = _port(port_text)
        if port is None:
            return None
    name = name.rstrip(".")
    if not _is_ip(name) and not _HOSTNAME.match(name):
        return None
    return name, port


def _port(text: str) -> int | None:
    if not text.isdigit() or len(text) > 5:
        return None
    port = int(text)
    return port if 0 < port < 65536 else None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def normalize_origin(value: str) -> str | None:
    """``scheme://host:port`` (explicit port, lower case) of an ``Origin`` value; None when malformed or "null"."""
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    if parts.username is not None or parts.password is not None:
        return None
    host = split_host(parts.netloc)
    if host is None:
        return None
    name, port = host
    shown = f"[{name}]" if ":" in name else name
    return f"{parts.scheme}://{shown}:{port or _DEFAULT_PORTS[parts.scheme]}"


def host_entry_problem(entry: str) -> str | None:
    return None if split_host(entry) is not None else "not a host name, IP or name:port (no scheme, no path)"


def origin_entry_problem(entry: str) -> str | None:
    if normalize_origin(entry) is None:
        return "not an origin: expected scheme://host[:port] with http or https and no path, e.g. https://x.example"
    return None


@dataclass(frozen=True)
class RequestGuard:
    """The Host/Origin policy of one server (built from ``ServerConfig``)."""

    bind_host: str = "127.0.0.1"
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()

    def host_problem(self, host_header: str | None, local_port: int | None) -> str | None:
        if not host_header:
            return "missing Host header"
        parsed = split_host(host_header)
        if parsed is None:
            return f"malformed Host header {host_header[:100]!r}"
        name, port = parsed
        effective = port if port is not None else 80
        at_our_port = local_port is None or effective == local_port
        bind = self.bind_host.strip("[]").lower()
        if at_our_port and (name in LOOPBACK_NAMES or _is_loopback_ip(name)):
            return None
        if at_our_port and bind not in WILDCARD_HOSTS and name == bind:
            return None
        if bind in WILDCARD_HOSTS and _is_ip(name):  # any port: a container's port may be published as another
            return None
        for entry in self.allowed_hosts:
            allowed = split_host(entry)
            if allowed is None or allowed[0] != name:
                continue
            if allowed[1] is None and (port is None or at_our_port):
                return None
            if allowed[1] is not None and allowed[1] == effective:
                return None
        return (
            f"Host {host_header[:100]!r} is not this server; use http://127.0.0.1:{local_port} or add the name to "
            "server.allowed_hosts"
        )

    def origin_problem(self, origin: str | None, host_header: str) -> str | None:
        if origin is None:
            return None
        norm = normalize_origin(origin)
        if norm is not None and (norm == normalize_origin(f"http://{host_header}") or norm in self._origins()):
            return None
        return (
            f"cross-origin request refused: Origin {origin[:100]!r} is not this server (http://{host_header[:100]}) "
            "and not in server.allowed_origins"
        )

    def _origins(self) -> frozenset[str]:
        return frozenset(o for o in (normalize_origin(e) for e in self.allowed_origins) if o is not None)


def _is_loopback_ip(name: str) -> bool:
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def local_port(request: web.Request) -> int | None:
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if isinstance(sockname, tuple) and len(sockname) >= 2 and isinstance(sockname[1], int):
        return sockname[1]
    return None


class RefusalLog:
    """One warning per ``interval_s`` at most for refused requests (a hostile page may send thousands), with the
    number refused since the last line, so the streamer learns that something is knocking without a log flood."""

    def __init__(self, interval_s: float = REFUSAL_LOG_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.refused = 0
        self._logged = 0
        self._at = float("-inf")

    def note(self, status: int, problem: str, path: str) -> None:
        self.refused += 1
        now = time.monotonic()
        if now - self._at >= self.interval_s:
            log.warning(
                "request refused",
                status=status,
                reason=problem,
                path=path[:100],
                since_last_log=self.refused - self._logged,
            )
            self._at, self._logged = now, self.refused


def guard_middleware(guard: RequestGuard, refusals: RefusalLog | None = None) -> Middleware:
    """Host (421) then Origin (403) on every route, before the token check and any handler."""
    from aiohttp import web

    refusals = refusals or RefusalLog()

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host")
        problem = guard.host_problem(host, local_port(request))
        if problem:
            refusals.note(421, problem, request.path)
            return web.json_response({"error": problem}, status=421)
        assert host is not None
        problem = guard.origin_problem(request.headers.get("Origin"), host)
        if problem:
            refusals.note(403, problem, request.path)
            return web.json_response({"error": problem}, status=403)
        return await handler(request)

    return check
