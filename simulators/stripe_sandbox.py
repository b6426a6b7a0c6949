"""A Stripe-compatible sandbox: `localstripe` run as a subprocess on a free port.

Used by the tests, the demo and the benchmarks::

    with stripe_sandbox() as url:            # or: async with async_stripe_sandbox() as url
        settings = Settings(stripe_api_base=url, stripe_api_key="sk_test_x", ...)

The server starts from scratch (``--from-scratch``), answers on
``http://127.0.0.1:<port>`` and is stopped (SIGTERM, then SIGKILL) when the
block exits. localstripe keeps its state in memory only for our purposes; it
does not honour ``Idempotency-Key``, so exactly-once must come from our
database, never from the sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator

SANDBOX_API_KEY = "sk_test_chargepay"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    request = urllib.request.Request(
        f"{url}/v1/customers", headers={"Authorization": f"Bearer {SANDBOX_API_KEY}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # it answers, even if it dislikes the request
    except OSError:
        return False


def _command(port: int) -> list[str]:
    exe = shutil.which("localstripe")
    if exe is None:
        return [sys.executable, "-m", "localstripe", "--port", str(port), "--from-scratch"]
    return [exe, "--port", str(port), "--from-scratch"]


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@contextlib.contextmanager
def stripe_sandbox(start_timeout_s: float = 20.0) -> Iterator[str]:
    """Run localstripe until the block exits; yields its base URL."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(_command(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + start_timeout_s
        while not _answers(url):
            if process.poll() is not None:
                raise RuntimeError(f"localstripe exited with {process.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError("localstripe did not answer in time")
            time.sleep(0.05)
        yield url
    finally:
        _stop(process)


@contextlib.asynccontextmanager
async def async_stripe_sandbox(start_timeout_s: float = 20.0) -> AsyncIterator[str]:
    """The same, for async code: start-up and shut-down run in a worker thread."""
    manager = stripe_sandbox(start_timeout_s)
    url = await asyncio.to_thread(manager.__enter__)
    try:
        yield url
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)
