"""The portal's router: every page an individual (and later a vendor or auditor) sees."""

from fastapi import APIRouter

from web import accounts, profile

router = APIRouter(include_in_schema=False)
router.include_router(accounts.router)
router.include_router(profile.router)
