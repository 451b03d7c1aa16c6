"""RFC 9457 problem details: every error the API returns is ``application/problem+json`` a person can read."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from citysense_common.store import StoreError
from citysense_common.store.base import InvalidCursor
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from citysense_alert_api.security import SECURITY_HEADERS

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("citysense.alert_api")


class InvalidParam(BaseModel):
    name: str = Field(description="where the problem is, e.g. query.limit or body.filters.bbox")
    reason: str


class ProblemDetails(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(default="about:blank")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    invalid_params: list[InvalidParam] | None = Field(default=None, alias="invalid-params")


class Problem(Exception):  # noqa: N818 - it is the RFC's name
    def __init__(self, status: int, title: str, detail: str, *, type_: str = "about:blank",
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.type = status, title, detail, type_
        self.headers = headers or {}
        self.extra = extra


def problem_response(request: Request, status: int, title: str, detail: str | None, *, type_: str = "about:blank",
                     headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body["instance"] = request.url.path
    body.update({k.replace("_", "-"): v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _where(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"query", "path", "body", "header"}:
        return parts[0] + ("." + ".".join(parts[1:]) if len(parts) > 1 else "")
    return ".".join(parts) or "request"


def _reason(error: dict[str, Any]) -> str:
    kind, msg = error.get("type", ""), str(error.get("msg", "is invalid"))
    if kind == "missing":
        return "is required"
    if kind == "json_invalid":
        return "the request body is not valid JSON" + (f" ({error['ctx']['error']})" if error.get("ctx") else "")
    if kind == "extra_forbidden":
        return "is not a known field (check the spelling)"
    if kind == "literal_error" or kind == "enum":
        expected = (error.get("ctx") or {}).get("expected")
        return f"must be one of {expected}" if expected else msg
    if msg.startswith("Value error, "):
        return msg[len("Value error, "):]
    return msg[:1].lower() + msg[1:]


def validation_problem(request: Request, errors: list[dict[str, Any]]) -> JSONResponse:
    params = [{"name": _where(tuple(e.get("loc", ()))), "reason": _reason(e)} for e in errors]
    summary = "; ".join(f"{p['name']} {p['reason']}" if not p["reason"].startswith("the request")
                        else p["reason"] for p in params[:5])
    return problem_response(request, 422, "Invalid request", summary, type_="urn:citysense:problem:invalid-request",
                            invalid_params=params)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(request, exc.status, exc.title, exc.detail, type_=exc.type, headers=exc.headers,
                                **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_problem(request, list(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = HTTPStatus(exc.status_code).phrase
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
        if exc.status_code == 404 and detail is None:
            detail = f"There is no resource at {request.url.path}; see /docs for the API."
        if exc.status_code == 405 and detail is None:
            detail = f"{request.method} is not supported on {request.url.path}."
        return problem_response(request, exc.status_code, title, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(InvalidCursor)
    async def _cursor(request: Request, exc: InvalidCursor) -> JSONResponse:
        return problem_response(request, 400, "Invalid cursor",
                                "The cursor is not one this API returned for this query; start again without ?cursor= "
                                "to get the first page.",
                                type_="urn:citysense:problem:invalid-cursor")

    @app.exception_handler(StoreError)
    async def _store(request: Request, exc: StoreError) -> JSONResponse:
        log.warning("store error on %s %s: %s", request.method, request.url.path, exc)
        return problem_response(request, 503, "Service Unavailable",
                                "The data store is not reachable right now; try again shortly.",
                                headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        # Sent by Starlette's outermost error middleware, past the security-headers middleware: set them here.
        return problem_response(request, 500, "Internal Server Error",
                                "Something went wrong on our side; the error has been logged.",
                                headers=dict(SECURITY_HEADERS))


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting problem+json errors (so clients and schemathesis know them)."""
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}},
        }
        for status in statuses
    }
