"""The versioned REST API for vendors."""

from fastapi import APIRouter

router = APIRouter(prefix="/vendor/v1", tags=["vendor"])
