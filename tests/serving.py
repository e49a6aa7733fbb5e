"""Starting a real `webllm serve` for tests: a free loopback port, a wait for /health, a clean stop."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def webllm_serve(package, *args: str, timeout: float = 300) -> Iterator[str]:
    """Run `webllm serve PACKAGE ARGS` on a free port; yield its base URL (no trailing slash) once /health
    answers; stop it afterwards. A server that exits or never comes up fails the test with its output."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "webllm", "serve", str(package), "--port", str(port), "--quiet",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                pytest.fail(f"webllm serve exited: {proc.stdout.read()}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("webllm serve did not come up")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
