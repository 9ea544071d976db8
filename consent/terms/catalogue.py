"""The terms roster: a small set of standard agreements an individual proffers to vendors.

In the spirit of IEEE 7012 ("MyTerms"), the person is the first party: they choose one of these
agreements, vendors declare which ones they accept (``VendorApp.accepted_agreements``), and a
grant records the one both sides accepted. Each agreement has a stable id (vendors and grants
refer to it), a version, a plain-language page (``/terms/<id>``) and a machine-readable form
(``/terms/<id>.json``). The clauses speak in the individual's voice: "I" is the person, "the
vendor" the business that reads their data.

Ids never change meaning; a substantive change to an agreement gets a new version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vault.accounts.models import Account
from vault.errors import InvalidInput

FRAMEWORK = "IEEE 7012 (MyTerms): machine-readable personal privacy terms"
"""Named in every machine-readable agreement; the texts are this vault's own, not the standard's."""

RETENTION_GRACE_DAYS = 30


@dataclass(frozen=True, slots=True)
class Retention:
    """How long the vendor may keep what it read."""

    until: str
    """``"grant-ends"``: until my permission ends (revoked or expired)."""
    grace_days: int
    """Days after that in which the vendor deletes it (law may require keeping some records)."""
    intents_until: str | None = None
    """For intent data: ``"intent-closed"`` (expired, withdrawn or answered and closed)."""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"until": self.until, "grace_days": self.grace_days}
        if self.intents_until:
            out["intents_until"] = self.intents_until
        out["legal_obligations_excepted"] = True
        return out


@dataclass(frozen=True, slots=True)
class Agreement:
    """One standard agreement: plain language for people, a stable form for machines."""

    id: str
    version: str
    title: str
    summary: str
    clauses: tuple[str, ...]
    permitted_uses: tuple[str, ...]
    prohibited: tuple[str, ...]
    retention: Retention
    portability: bool
    tracking_off_site: bool
    sharing_with_third_parties: bool

    @property
    def url(self) -> str:
        """The plain-language page (relative to the vault's base URL)."""
        return f"/terms/{self.id}"

    @property
    def json_url(self) -> str:
        return f"/terms/{self.id}.json"

    def machine_readable(self, base_url: str = "") -> dict[str, Any]:
        """The agreement as data; links are absolute when ``base_url`` is given."""
        base = base_url.rstrip("/")
        return {
            "id": self.id,
            "version": self.version,
            "title": self.title,
            "summary": self.summary,
            "framework": FRAMEWORK,
            "first_party": "individual",
            "second_party": "vendor",
            "permitted_uses": list(self.permitted_uses),
            "prohibited": list(self.prohibited),
            "retention": self.retention.as_dict(),
            "portability": self.portability,
            "tracking_off_site": self.tracking_off_site,
            "sharing_with_third_parties": self.sharing_with_third_parties,
            "plain_language_url": base + self.url,
        }


_STANDARD_RETENTION = Retention(until="grant-ends", grace_days=RETENTION_GRACE_DAYS)

_NO_SALE = (
    "The vendor does not sell, rent or give my data to anyone else. Companies that help the "
    "vendor deliver the service may handle it only on the vendor's behalf and under these same "
    "terms."
)
_NO_OFF_SITE = (
    "The vendor does not track me on other websites or apps, and does not let advertising "
    "networks or data brokers collect data about me through its own site."
)
_DELETE = (
    f"When my permission ends (I revoke it or it expires), the vendor deletes my data within "
    f"{RETENTION_GRACE_DAYS} days, except records the law requires it to keep."
)
_FIRST_PARTY = (
    "These are my terms: I offer them and the vendor accepts them by reading my data. Where the "
    "vendor's own terms or privacy policy say otherwise, these terms apply to the data I share "
    "through my vault."
)

INTENT_SHARING = "intent-sharing"
"""The agreement intents are published under: only apps that accept it see intents, and a
grant made by accepting an offer falls back to it."""

AGREEMENTS: dict[str, Agreement] = {
    a.id: a
    for a in (
        Agreement(
            id="service-only",
            version="1.0",
            title="Service delivery only",
            summary="Use my data only to give me the service I asked for, and for nothing else.",
            clauses=(
                "The vendor uses the data I share only to provide the product or service I asked "
                "for, including delivering it, billing me for it and supporting me with it.",
                "The vendor does not use my data for advertising or marketing, and does not build "
                "a profile of me.",
                _NO_SALE,
                _NO_OFF_SITE,
                _DELETE,
                _FIRST_PARTY,
            ),
            permitted_uses=("service-delivery",),
            prohibited=(
                "advertising",
                "marketing",
                "profiling",
                "sale",
                "sharing-with-third-parties",
                "tracking-off-site",
            ),
            retention=_STANDARD_RETENTION,
            portability=False,
            tracking_off_site=False,
            sharing_with_third_parties=False,
        ),
        Agreement(
            id="service-and-portability",
            version="1.0",
            title="Service delivery with data portability",
            summary=(
                "Use my data only to serve me, and give me a copy of everything you hold about "
                "me whenever I ask."
            ),
            clauses=(
                "The vendor uses the data I share only to provide the product or service I asked "
                "for, including delivering it, billing me for it and supporting me with it.",
                "When I ask, the vendor gives me a copy of all the data it holds about me, within "
                "30 days and free of charge, in a common machine-readable format (such as JSON or "
                "CSV) that I can take to another provider.",
                "The vendor does not use my data for advertising or marketing, and does not build "
                "a profile of me.",
                _NO_SALE,
                _NO_OFF_SITE,
                _DELETE,
                _FIRST_PARTY,
            ),
            permitted_uses=("service-delivery",),
            prohibited=(
                "advertising",
                "marketing",
                "profiling",
                "sale",
                "sharing-with-third-parties",
                "tracking-off-site",
            ),
            retention=_STANDARD_RETENTION,
            portability=True,
            tracking_off_site=False,
            sharing_with_third_parties=False,
        ),
        Agreement(
            id="no-tracking",
            version="1.0",
            title="No tracking off your site",
            summary=(
                "Use my data for your own service and your own site, but do not follow me "
                "anywhere else."
            ),
            clauses=(
                "The vendor may use the data I share to provide its service to me, to measure "
                "how its own site or app is used, and to show me its own offers while I am on "
                "its own site or app.",
                _NO_OFF_SITE,
                "The vendor does not combine my data with data about me from other sources, and "
                "does not use it to advertise to me anywhere else.",
                _NO_SALE,
                _DELETE,
                _FIRST_PARTY,
            ),
            permitted_uses=(
                "service-delivery",
                "first-party-analytics",
                "first-party-offers-on-own-site",
            ),
            prohibited=(
                "tracking-off-site",
                "third-party-trackers",
                "combining-with-other-sources",
                "advertising-elsewhere",
                "sale",
                "sharing-with-third-parties",
            ),
            retention=_STANDARD_RETENTION,
            portability=False,
            tracking_off_site=False,
            sharing_with_third_parties=False,
        ),
        Agreement(
            id=INTENT_SHARING,
            version="1.0",
            title="Sharing intent data",
            summary=(
                "Use the purchase intents I publish, and the data I share, to make me offers "
                "and to serve me: nothing else."
            ),
            clauses=(
                "The vendor may read the purchase intents I publish and the data I share, to "
                "answer my intents with offers and to provide what I then buy.",
                "The vendor does not try to find out who I am from an intent; it knows me only "
                "by the name the vault shows it, unless I share more.",
                "The vendor does not use my intents or my data to build a profile of me, to "
                "advertise to me elsewhere, or to track me on other websites or apps.",
                _NO_SALE,
                "The vendor deletes what it learned from an intent once that intent is closed "
                "(it expired, I withdrew it, or the purchase is done), and my other data within "
                f"{RETENTION_GRACE_DAYS} days after my permission ends, except records the law "
                "requires it to keep.",
                _FIRST_PARTY,
            ),
            permitted_uses=("service-delivery", "offers-in-response-to-intents"),
            prohibited=(
                "re-identification",
                "profiling",
                "advertising-elsewhere",
                "tracking-off-site",
                "sale",
                "sharing-with-third-parties",
            ),
            retention=Retention(
                until="grant-ends",
                grace_days=RETENTION_GRACE_DAYS,
                intents_until="intent-closed",
            ),
            portability=False,
            tracking_off_site=False,
            sharing_with_third_parties=False,
        ),
    )
}

DEFAULT_AGREEMENT = "service-only"


def get_agreement(agreement_id: str) -> Agreement | None:
    return AGREEMENTS.get(agreement_id)


def agreement_for(account: Account) -> Agreement:
    """The agreement this individual proffers: their preferred one, else the default."""
    preferred = account.preferred_agreement_id
    return AGREEMENTS.get(preferred or "") or AGREEMENTS[DEFAULT_AGREEMENT]


def vendor_accepts(accepted_agreements: list[str], agreement: Agreement) -> bool:
    """Whether a vendor app's declared agreements include this one (flagged on consent if not)."""
    return agreement.id in accepted_agreements


def set_preferred_agreement(account: Account, agreement_id: object) -> Agreement:
    """Store the individual's choice; anything not on the roster is refused."""
    agreement = AGREEMENTS.get(agreement_id) if isinstance(agreement_id, str) else None
    if agreement is None:
        raise InvalidInput("Choose one of the listed agreements.", field="agreement")
    account.preferred_agreement_id = agreement.id
    return agreement
