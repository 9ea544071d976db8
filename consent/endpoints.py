"""Routes of the consent domain (the authorization server lands here)."""

from fastapi import APIRouter

router = APIRouter(tags=["consent"])
