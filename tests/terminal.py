"""Run a command on a real pseudo-terminal (the ``pty`` module): what a user at a terminal sees,
standard output and standard error together, escape sequences included."""

from __future__ import annotations

import os
import pty
import select
import subprocess
from collections.abc import Mapping, Sequence


def run_on_terminal(argv: Sequence[str], env: Mapping[str, str], timeout: float = 120) -> str:
    """Run ``argv`` with a terminal as its standard output and error; all it wrote. It must
    exit 0."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=dict(env)
        )
        os.close(slave)
        out = b""
        while True:
            ready, _, _ = select.select([master], [], [], timeout)
            if not ready:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the other end is closed
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(timeout) == 0, out.decode(errors="replace")
    finally:
        os.close(master)
    return out.decode(errors="replace")
