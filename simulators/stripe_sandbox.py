"""A Stripe-compatible sandbox: `localstripe` run as a subprocess on a free port.

Used by the tests, the demo and the benchmarks::

    with stripe_sandbox() as url:            # or: async with async_stripe_sandbox() as url
        settings = Settings(stripe_api_base=url, stripe_api_key="sk_test_x", ...)

The server starts from scratch (``--from-scratch``), answers on
``http://127.0.0.1:<port>`` and is stopped (SIGTERM, then SIGKILL) when the
block exits. Its state lives in memory (the per-write snapshot to /tmp is off
unless ``persist=True``). It does not honour ``Idempotency-Key``, so
exactly-once must come from our database, never from the sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator

from simulators.ports import free_port

SANDBOX_API_KEY = "sk_test_chargepay"
# localstripe is a development and demo tool, not a dependency of the station itself.
MISSING = "the Stripe sandbox needs localstripe: pip install -e '.[demo]' (or '.[dev]')"


class SandboxUnavailable(RuntimeError):
    """localstripe is not installed in this environment."""


def sandbox_installed() -> bool:
    return importlib.util.find_spec("localstripe") is not None


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


# localstripe pickles its whole store to /tmp/localstripe.pickle after every write: the
# cost grows with every object (a benchmark slows down as it runs) and parallel sandboxes
# share the file. Started from scratch it never reads the file back, so the snapshot is
# switched off; the server is otherwise the same.
_BOOT = (
    "import localstripe.resources as r; r.Store.dump_to_disk = lambda self: None; "
    "from localstripe.server import start; start()"
)


def _command(port: int, persist: bool) -> list[str]:
    if persist:
        exe = shutil.which("localstripe")
        head = [exe] if exe else [sys.executable, "-m", "localstripe"]
        return [*head, "--port", str(port), "--from-scratch"]
    return [sys.executable, "-c", _BOOT, "--port", str(port), "--from-scratch"]


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@contextlib.contextmanager
def stripe_sandbox(start_timeout_s: float = 20.0, *, persist: bool = False) -> Iterator[str]:
    """Run localstripe until the block exits; yields its base URL.

    ``persist=True`` keeps localstripe's own snapshot to /tmp after every write.
    """
    if not sandbox_installed():
        raise SandboxUnavailable(MISSING)
    process, url = _start(start_timeout_s, persist)
    try:
        yield url
    finally:
        _stop(process)


# localstripe binds the wildcard address; a port free on 127.0.0.1 may still be taken
# there by another process (a busy machine), and then it exits at once. Pick again.
_START_ATTEMPTS = 5


def _start(start_timeout_s: float, persist: bool) -> tuple[subprocess.Popen[bytes], str]:
    deadline = time.monotonic() + start_timeout_s
    for _attempt in range(_START_ATTEMPTS):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        process = subprocess.Popen(
            _command(port, persist), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            while not _answers(url):
                if process.poll() is not None:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError("localstripe did not answer in time")
                time.sleep(0.05)
            else:
                return process, url
        except BaseException:
            _stop(process)
            raise
    raise RuntimeError(f"localstripe exited with {process.returncode}")


@contextlib.asynccontextmanager
async def async_stripe_sandbox(
    start_timeout_s: float = 20.0, *, persist: bool = False
) -> AsyncIterator[str]:
    """The same, for async code: start-up and shut-down run in a worker thread."""
    manager = stripe_sandbox(start_timeout_s, persist=persist)
    url = await asyncio.to_thread(manager.__enter__)
    try:
        yield url
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)
