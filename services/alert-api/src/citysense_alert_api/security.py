"""Security headers on every response: the citizen page, /docs and the API alike.

The page and the Swagger UI at /docs load scripts and styles from this origin only (no inline script or style, no
other host; Swagger UI's assets are vendored from the ``swagger-ui-bundle`` package), so the policy needs neither
``'unsafe-inline'`` nor ``'unsafe-eval'``. ``img-src data:`` is for Swagger UI's icons, which its CSS embeds; the
citizen map's tiles are images from the one tile host of the settings (``map_tile_url``), added to ``img-src`` alone.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def content_security_policy(image_sources: tuple[str, ...] = ()) -> str:
    """The policy; ``image_sources`` (e.g. the map's tile host) are allowed for images and nothing else."""
    images = " ".join(("'self'", "data:", *image_sources))
    return (
        f"default-src 'self'; script-src 'self'; style-src 'self'; img-src {images}; connect-src 'self'; "
        "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


CONTENT_SECURITY_POLICY = content_security_policy()
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers without CSP level 2
    "Referrer-Policy": "no-referrer",
}


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, image_sources: tuple[str, ...] = ()) -> None:
        self.app = app
        self.headers = {**SECURITY_HEADERS, "Content-Security-Policy": content_security_policy(image_sources)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
