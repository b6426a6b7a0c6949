"""A cap on request bodies for every endpoint: 413 problem+json past the limit.

A declared ``Content-Length`` above the cap is refused before the body is
read; a chunked body is counted as it arrives and refused when it passes the
cap (the route sees a 413 HTTPException from ``receive``, which the problem
renderer turns into the same document). A body still incomplete
``timeout_s`` after the route first asked for it is a 408.
"""

from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from station.api.problems import problem


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # The whole body must arrive within this of the first read (a slow body is
        # slowloris past the head): 408, and the connection is not kept.
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared == -1:
            response = problem(400, "validation_error", "Bad request", "invalid Content-Length")
            await response(scope, receive, send)
            return
        if declared is not None and declared > self.max_bytes:
            await self._too_large()(scope, receive, send)
            return
        seen = 0
        deadline: float | None = None
        body_done = False

        async def counting_receive() -> Message:
            nonlocal seen, deadline, body_done
            if self.timeout_s is None or body_done:  # e.g. waiting for a disconnect
                message = await receive()
            else:
                loop = asyncio.get_running_loop()
                deadline = deadline or loop.time() + self.timeout_s
                try:
                    async with asyncio.timeout_at(deadline):
                        message = await receive()
                except TimeoutError:
                    raise HTTPException(
                        408,
                        f"request body not received within {self.timeout_s:g} s",
                        headers={"Connection": "close"},
                    ) from None
            if message["type"] == "http.request":
                body_done = not message.get("more_body", False)
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, self._detail())
            return message

        await self.app(scope, counting_receive, send)

    def _detail(self) -> str:
        return f"request body larger than {self.max_bytes} bytes"

    def _too_large(self) -> ASGIApp:
        return problem(413, "validation_error", "Request body too large", self._detail())


def _content_length(scope: Scope) -> int | None:
    """The declared length, None when absent, -1 when unreadable."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return -1
            return length if length >= 0 else -1
    return None
