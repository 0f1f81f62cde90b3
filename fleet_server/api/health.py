"""``GET /healthz``."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
def healthz() -> dict[str, str]:
    """Answers ``{"status": "ok"}`` while the server runs."""
    return {"status": "ok"}
