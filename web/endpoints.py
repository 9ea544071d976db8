"""The portal's router: every page an individual (and later a vendor or auditor) sees."""

from vault.routing import APIRouter
from web import (
    accounts,
    audit,
    connections,
    console,
    intents,
    live,
    mail,
    portability,
    profile,
    security,
    terms,
)
from web import consent as consent_screen

router = APIRouter(include_in_schema=False)
router.include_router(accounts.router)
router.include_router(security.router)
router.include_router(profile.router)
router.include_router(console.router)
router.include_router(consent_screen.router)
router.include_router(terms.router)
router.include_router(connections.router)
router.include_router(intents.router)
router.include_router(live.router)
router.include_router(portability.router)
router.include_router(audit.router)
router.include_router(mail.router)
