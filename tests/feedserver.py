"""A local JSON feed for the `feed` stream plugin (fixtures/plugins/feed), and stores using it.

`GET /feed?after=<id>&limit=<n>` answers `{"items": [...]}`: the items with an id above `after`,
at most `limit` of them. Two ways to misbehave, for the bad-input tests: `rewind` (ignore
`after`: serve from the first item again) and `ignore_limit` (serve every item asked for or not).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from .plugin_builds import built_plugin


class FeedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.items: list[dict[str, Any]] = []
        self.rewind = False
        self.ignore_limit = False
        self.requests: list[str] = []

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.host}/feed"

    def add(self, count: int, **flags: Any) -> list[dict[str, Any]]:
        """``count`` new items (ids after the last), each with ``flags``."""
        first = self.items[-1]["id"] + 1 if self.items else 1
        new = [
            {"id": i, "title": f"item {i}", "body": f"body of item {i}\n", **flags}
            for i in range(first, first + count)
        ]
        self.items += new
        return new


class _Handler(BaseHTTPRequestHandler):
    server: FeedServer

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        query = parse_qs(urlparse(self.path).query)
        after = int(query.get("after", ["0"])[0])
        limit = int(query.get("limit", ["100"])[0])
        items = [i for i in self.server.items if self.server.rewind or i["id"] > after]
        if not self.server.ignore_limit:
            items = items[:limit]
        body = json.dumps({"items": items}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def feed_table(server: FeedServer, **extra: Any) -> dict[str, Any]:
    """The table of a `feed` stream reading ``server`` for alice."""
    limits = {"timeout": 5.0, **extra.pop("limits", {})}
    return {
        "path": built_plugin("feed"),
        "source_kind": "stream",
        "allowed_hosts": [server.host],
        "config": {"url": server.url, "owner": "alice", **extra.pop("config", {})},
        "limits": limits,
        **extra,
    }
