"""Routes of the intents domain."""

from fastapi import APIRouter

router = APIRouter(tags=["intents"])
