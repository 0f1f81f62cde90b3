"""``GET /dashboard``: one self-contained HTML page (no CDN) that polls the REST API."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["dashboard"])
PAGE = Path(__file__).resolve().parent.parent / "dashboard" / "index.html"


@cache
def _page() -> str:
    return PAGE.read_text(encoding="utf-8")


@router.get("/dashboard", response_class=HTMLResponse, summary="Rollout dashboard")
def dashboard() -> HTMLResponse:
    return HTMLResponse(_page())
