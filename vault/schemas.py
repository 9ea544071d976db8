"""Pydantic models shared by every API."""

from __future__ import annotations

from pydantic import BaseModel


class ErrorBody(BaseModel):
    error: str
    detail: str
    field: str | None = None
