"""Servers for the `s3` plugin's tests and benchmark: a real S3-compatible server (moto in server
mode, on 127.0.0.1) with a boto3 client for the test's own view of the bucket, and a tiny HTTP
server that misbehaves on purpose (500, too slow, too big) or records the requests it gets.

moto answers an unsigned GET of a private object with 403, so the plugin is configured with
(dummy) keys and signs every request: moto accepts any key and signature.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
ACCESS_KEY = "AKIDBLOCKSYNCTEST"
SECRET_KEY = "blocksync-test-secret"


@dataclass
class S3Server:
    """A running moto server: `endpoint` is ``http://127.0.0.1:<port>``."""

    server: ThreadedMotoServer
    host: str
    port: int
    client: Any = field(repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    def new_bucket(self) -> str:
        name = f"bs-{uuid.uuid4().hex[:16]}"
        self.client.create_bucket(Bucket=name)
        return name

    def put(self, bucket: str, key: str, data: str | bytes) -> str:
        body = data.encode("utf-8") if isinstance(data, str) else data
        return str(self.client.put_object(Bucket=bucket, Key=key, Body=body)["ETag"])

    def get(self, bucket: str, key: str) -> str | None:
        try:
            found = self.client.get_object(Bucket=bucket, Key=key)
        except self.client.exceptions.NoSuchKey:
            return None
        return str(found["Body"].read().decode("utf-8"))

    def head(self, bucket: str, key: str) -> dict[str, Any]:
        return dict(self.client.head_object(Bucket=bucket, Key=key))

    def delete(self, bucket: str, key: str) -> None:
        self.client.delete_object(Bucket=bucket, Key=key)

    def keys(self, bucket: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


@contextmanager
def s3_server() -> Iterator[S3Server]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        client = boto3.client(
            "s3",
            endpoint_url=f"http://{host}:{port}",
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(s3={"addressing_style": "path"}),
        )
        yield S3Server(server, host, port, client)
    finally:
        server.stop()


def plugin_config(s3: S3Server, bucket: str, **extra: Any) -> dict[str, Any]:
    """The plugin's `config` table for `bucket` on `s3` (owner alice, read-write, signed)."""
    config = {
        "bucket": bucket,
        "region": REGION,
        "endpoint": s3.endpoint,
        "owner": "alice",
        "permission": "read-write",
        "access_key": ACCESS_KEY,
        "secret_key": SECRET_KEY,
    }
    config.update(extra)
    return config


# -- a server that misbehaves, or records ----------------------------------------------------

EMPTY_LISTING = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    b"<IsTruncated>false</IsTruncated><KeyCount>0</KeyCount></ListBucketResult>"
)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class FaultServer(ThreadingHTTPServer):
    """``mode``: "500" (an S3 InternalError for everything but the time HEAD), "slow" (sleeps
    `delay` s before answering), "big" (a body of `size` bytes), "record" (an empty bucket that
    keeps every request in `requests`)."""

    daemon_threads = True

    def __init__(self, mode: str, *, delay: float = 3.0, size: int = 3 << 20) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode, self.delay, self.size = mode, delay, size
        self.requests: list[Recorded] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FaultServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _answer(self, status: int, body: bytes, content_type: str = "application/xml") -> None:
        self.send_response(status)
        self.send_header("Date", formatdate(usegmt=True))
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        server = self.server
        server.requests.append(Recorded(self.command, self.path, dict(self.headers), body))
        if self.command == "HEAD" and self.path.count("/") <= 2 and "?" not in self.path:
            self._answer(200, b"")  # the bucket: where the plugin learns the time
            return
        if server.mode == "500":
            self._answer(
                500,
                b"<Error><Code>InternalError</Code><Message>We encountered an "
                b"internal error. Please try again.</Message></Error>",
            )
        elif server.mode == "slow":
            time.sleep(server.delay)
            self._answer(200, EMPTY_LISTING)
        elif server.mode == "big":
            self._answer(200, b"x" * server.size, "text/plain")
        else:
            self._answer(200, EMPTY_LISTING if "list-type=2" in self.path else b"")

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _handle


@contextmanager
def fault_server(mode: str, **kwargs: Any) -> Iterator[FaultServer]:
    server = FaultServer(mode, **kwargs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
