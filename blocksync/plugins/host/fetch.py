"""HTTP on a plugin's behalf: only to allowed hosts, with a deadline and a response-size cap.

Plugins have no network of their own (no WASI sockets, no wasi:http); the host's ``http-get``,
``http-post`` and ``http.request`` come here. Redirects are not followed: a 3xx is returned as it
is, so a redirect can never lead a plugin to a host outside its allowlist.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from blocksync import deadlines
from blocksync.errors import AccessDenied, TransportError

_CHUNK = 64 * 1024


@dataclass(frozen=True)
class HttpPolicy:
    allowed_hosts: tuple[str, ...]  # "host", "host:port" or "*.domain"
    timeout: float
    max_response_bytes: int

    def check(self, url: str) -> tuple[str, str, int, str]:
        """(scheme, host, port, path?query) of an allowed URL; AccessDenied otherwise."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise AccessDenied(f"malformed URL {url!r}: {exc}") from exc
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise AccessDenied(
                f"only http:// and https:// URLs with a host are allowed, not {url!r}"
            )
        host = parts.hostname.lower()
        port = port or (443 if parts.scheme == "https" else 80)
        if not any(_host_matches(entry, host, port) for entry in self.allowed_hosts):
            allowed = ", ".join(self.allowed_hosts) or "none"
            raise AccessDenied(
                f"host {host}:{port} is not in the plugin's allowed_hosts ({allowed})"
            )
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return parts.scheme, host, port, target


def _host_matches(entry: str, host: str, port: int) -> bool:
    name, _, want_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
    if want_port and want_port != str(port):
        return False
    if name.startswith("*."):
        return host.endswith(name[1:])
    return host == name


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def request(
    policy: HttpPolicy,
    method: str,
    url: str,
    headers: list[tuple[str, str]],
    body: bytes | None,
) -> HttpResponse:
    scheme, host, port, target = policy.check(url)
    if not method.isalpha():
        raise AccessDenied(f"invalid HTTP method {method!r}")
    # no longer than the plugin call this request is part of has left (its epoch deadline
    # cannot stop a host function)
    timeout = deadlines.left(policy.timeout)
    deadline = time.monotonic() + timeout
    conn_class = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
    conn = conn_class(host, port, timeout=max(timeout, 0.001))
    # The socket timeout bounds each recv, not the whole exchange: a server dripping one byte
    # at a time kept a call (and the plugin, whose epoch deadline cannot interrupt a host
    # function) busy for minutes. At the deadline a timer shuts the socket down, which ends
    # any blocking read at once.
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        sock = conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    timed_out = f"{method} {url}: no complete answer within {timeout:g} s"
    try:
        conn.request(method.upper(), target, body=body, headers=dict(headers))
        resp = conn.getresponse()
        chunks, size = [], 0
        while True:
            if expired.is_set() or time.monotonic() > deadline:
                raise TransportError(timed_out)
            chunk = resp.read1(_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > policy.max_response_bytes:
                raise TransportError(
                    f"{method} {url}: response larger than the cap of {policy.max_response_bytes} bytes"
                )
            chunks.append(chunk)
        if expired.is_set():  # a shut-down socket reads as EOF: the body may be cut short
            raise TransportError(timed_out)
        return HttpResponse(resp.status, [(k, v) for k, v in resp.getheaders()], b"".join(chunks))
    except TimeoutError as exc:  # the socket's own timeout, or the deadline's
        raise TransportError(timed_out) from exc
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        if expired.is_set():
            raise TransportError(timed_out) from exc
        raise TransportError(f"{method} {url}: {exc}") from exc
    finally:
        timer.cancel()
        conn.close()
