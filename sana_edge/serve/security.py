"""ASGI middleware in front of the routes: the API key and the request-body limit.

Both answer in the OpenAI error shape before any route (or JSON parser) sees the request.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress

from starlette.responses import JSONResponse

from .errors import ApiError, body_too_large, unauthorized

# Open without a key: the page itself (it asks for the key) and the liveness probe.
OPEN_PATHS = ("/", "/healthz", "/favicon.ico")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


class ApiKeyMiddleware:
    """`Authorization: Bearer <key>` on every path but OPEN_PATHS, compared in constant time."""

    def __init__(self, app, api_key: str, on_error=None):
        self.app = app
        self._expected = f"Bearer {api_key}".encode()
        self._on_error = on_error

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            sent = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(sent, self._expected):
                error = unauthorized()
                if self._on_error:
                    self._on_error(error)
                return await error_response(error)(scope, receive, send)
        return await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuse request bodies over `limit` bytes (413): by Content-Length when sent, else by
    counting a chunked body as it arrives; the body read is replayed to the route.

    `trust_disconnect=False` hides `http.disconnect` from the routes (they then see a client
    that stays): behind Ray Serve's proxy a replica was seen to receive a disconnect for an open
    stream when another request reached it, which cancelled live generations. A gone client is
    then noticed only when a write to it fails."""

    def __init__(self, app, limit: int, on_error=None, trust_disconnect: bool = True):
        self.app = app
        self.limit = limit
        self._on_error = on_error
        self._trust_disconnect = trust_disconnect

    async def _refuse(self, scope, receive, send):
        error = body_too_large(self.limit)
        if self._on_error:
            self._on_error(error)
        await error_response(error)(scope, receive, send)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await self._refuse(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client gone before the body arrived
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await self._refuse(scope, receive, send)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            if not self._trust_disconnect:
                await asyncio.Event().wait()  # never: see the class docstring
            return await receive()  # afterwards: the real channel (http.disconnect)

        return await self.app(scope, replay, send)
