"""Friendly wrappers around the host imports (`host` and `http` interfaces of the WIT).

A host `err` becomes a `HostError`; JSON-typed arguments take Python values. Call these only from
inside an extension's methods: the module top level of a plugin runs at build time, when there is
no host to call.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from enum import IntEnum
from typing import TypeVar

from componentize_py_types import Err
from wit_world.imports import host as _host
from wit_world.imports import http as _http

from .model import BlockRef, HostError, Notification, Response

__all__ = [
    "LogLevel",
    "debug",
    "emit_notification",
    "error",
    "get_config",
    "http_get",
    "http_post",
    "http_request",
    "info",
    "log",
    "memory_create_block",
    "memory_delete_block",
    "memory_read_block",
    "memory_update_block",
    "trace",
    "warn",
]

T = TypeVar("T")

Headers = Mapping[str, str] | Iterable[tuple[str, str]]


def call_host(function: Callable[..., T], *args: object) -> T:
    """Call a host import, turning its `err` into `HostError` (`MergeConflict` has its own)."""
    try:
        return function(*args)
    except Err as exc:
        raise HostError(str(exc.value)) from None


class LogLevel(IntEnum):
    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4


def log(level: LogLevel | int, message: str) -> None:
    _host.log(int(level), str(message))


def trace(message: str) -> None:
    log(LogLevel.TRACE, message)


def debug(message: str) -> None:
    log(LogLevel.DEBUG, message)


def info(message: str) -> None:
    log(LogLevel.INFO, message)


def warn(message: str) -> None:
    log(LogLevel.WARN, message)


def error(message: str) -> None:
    log(LogLevel.ERROR, message)


# -- memory blocks: limited by the host to the owners this plugin is attached to and to its
#    permission rules.


def memory_create_block(owner: str, label: str, description: str, content: str) -> str:
    """Create a block; returns its id."""
    return call_host(_host.memory_create_block, owner, label, description, content)


def memory_read_block(owner: str, label: str) -> str:
    """The block's current content."""
    return call_host(_host.memory_read_block, owner, label)


def memory_update_block(owner: str, label: str, content: str) -> None:
    call_host(_host.memory_update_block, owner, label, content)


def memory_delete_block(owner: str, label: str) -> None:
    call_host(_host.memory_delete_block, owner, label)


# -- configuration and notifications


def get_config(key: str) -> str | None:
    """A value from this plugin's `config` table in the user's configuration, or None."""
    return _host.get_config(key)


def emit_notification(text: str | Notification, blocks: Iterable[BlockRef] = ()) -> None:
    """Tell the agents something (a data stream's push), naming the blocks it concerns."""
    if isinstance(text, Notification):
        notification = text
    else:
        notification = Notification(str(text), list(blocks))
    _host.emit_notification(notification)


# -- HTTP through the host: its allowlist and response cap apply.


def http_get(url: str, headers: Mapping[str, str] | None = None) -> str:
    """GET `url`; the body as text. Use `http_request` for status codes and bytes."""
    return call_host(_host.http_get, url, json.dumps(dict(headers or {})))


def http_post(url: str, body: str, headers: Mapping[str, str] | None = None) -> str:
    """POST text `body` to `url`; the response body as text."""
    return call_host(_host.http_post, url, json.dumps(dict(headers or {})), body)


def http_request(
    method: str,
    url: str,
    headers: Headers | None = None,
    body: bytes | str | None = None,
) -> Response:
    """Any method, binary bodies; a non-2xx status is a `Response` too, not an error."""
    if headers is None:
        pairs: list[tuple[str, str]] = []
    elif isinstance(headers, Mapping):
        pairs = [(str(k), str(v)) for k, v in headers.items()]
    else:
        pairs = [(str(k), str(v)) for k, v in headers]
    payload = body.encode("utf-8") if isinstance(body, str) else body
    return Response.from_wit(call_host(_http.request, method.upper(), url, pairs, payload))
