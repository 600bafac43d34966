"""Errors in the OpenAI API's JSON shape: {"error": {"message", "type", "param", "code"}}.

Existing OpenAI clients read `type`, `param` and `code` to decide what to show and whether to
retry, so every failure of the server, including a 404 route or a 413 body, uses this shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ApiError(Exception):
    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None
    headers: dict = field(default_factory=dict)

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def invalid(message: str, param: str | None = None, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, param=param, code=code)


def unauthorized() -> ApiError:
    return ApiError(401, "Incorrect API key provided. Send it as the header 'Authorization: Bearer <key>' "
                    "(the key given to `sana-edge serve --api-key` or SANA_EDGE_API_KEY).",
                    code="invalid_api_key")


def model_not_found(model: str, served: list[str]) -> ApiError:
    return ApiError(404, f"The model '{model}' does not exist; this server serves: {', '.join(served)}.",
                    param="model", code="model_not_found")


def queue_full(retry_after: int, waiting: int) -> ApiError:
    return ApiError(429, f"The server's queue is full ({waiting} requests waiting); retry after {retry_after} s.",
                    type="requests", code="rate_limit_exceeded", headers={"Retry-After": str(retry_after)})


def body_too_large(limit: int) -> ApiError:
    return ApiError(413, f"The request body is larger than this server accepts ({limit} bytes).",
                    code="request_too_large")


def shutting_down() -> ApiError:
    return ApiError(503, "The server is shutting down; retry on another replica or later.",
                    type="server_error", code="shutting_down", headers={"Retry-After": "5"})


def server_error(message: str) -> ApiError:
    return ApiError(500, message, type="server_error", code="server_error")
