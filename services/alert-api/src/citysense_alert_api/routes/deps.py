"""Dependencies shared by the routes: the store, settings, cursor signing, and the guard for invalid cursors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request

from citysense_alert_api.cursors import CursorSigner, invalid_cursor
from citysense_alert_api.settings import ApiSettings
from citysense_alert_api.store_calls import StoreCalls


# Dependencies are ``async def`` on purpose: FastAPI runs plain ``def`` dependencies in its threadpool, and two
# thread hops per request cost more than the whole store lookup on the hot read paths (see bench/p5_api.py).
async def get_store(request: Request) -> StoreCalls:
    return request.app.state.store_calls


async def get_settings(request: Request) -> ApiSettings:
    return request.app.state.settings


async def get_cursors(request: Request) -> CursorSigner:
    return request.app.state.cursors


async def require_token(request: Request) -> None:
    await request.app.state.token_checker(request)


# Store methods as coroutines run off the event loop with a time limit (store_calls.py): ``await store.x(...)``.
StoreDep = Annotated[StoreCalls, Depends(get_store)]
SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
CursorsDep = Annotated[CursorSigner, Depends(get_cursors)]
WriteAuth = Depends(require_token)

STATION_ID_REGEX = r"^[A-Za-z0-9._-]{1,64}$"
CURSOR_REGEX = r"^[A-Za-z0-9_=.:-]{1,1024}$"


@contextlib.contextmanager
def cursor_guard() -> Iterator[None]:
    """A cursor the store cannot decode is the client's mistake (400), not a server error."""
    try:
        yield
    except (ValueError, KeyError, TypeError) as exc:
        raise invalid_cursor("The cursor is not one this API returned for this query") from exc
