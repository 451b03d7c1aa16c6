"""Request-body cap, applied before routing so an unauthenticated client cannot make the API buffer a large body.

A declared ``Content-Length`` over the cap is refused before a byte of the body is read; a body without one
(chunked) is counted as it arrives and cut off as soon as it passes the cap. Either way the answer is 413
problem+json, and the rest of the body is never read (uvicorn closes the connection).
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from citysense_alert_api.problems import problem_response


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a body passes the cap. An HTTPException, so FastAPI's body parsing passes it on
    instead of turning it into a 400."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"The request body is larger than {max_bytes} bytes, the most this API accepts.")
        self.max_bytes = max_bytes


def body_too_large_response(request: Request, max_bytes: int):  # noqa: ANN201 - a JSONResponse
    return problem_response(
        request, 413, "Request body too large",
        f"The request body is larger than {max_bytes} bytes, the most this API accepts "
        "(CITYSENSE_API_MAX_BODY_BYTES).",
        type_="urn:citysense:problem:body-too-large", headers={"Connection": "close"})


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0  # the server refuses a malformed length itself
                if declared > self.max_bytes:
                    await body_too_large_response(Request(scope), self.max_bytes)(scope, receive, send)
                    return
                break
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await body_too_large_response(Request(scope), self.max_bytes)(scope, receive, send)
