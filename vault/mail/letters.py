"""The words of every message the vault sends (the README lists them). None holds a profile
value: what a message is about is behind a link into the vault."""

from __future__ import annotations

from vault.mail.compose import Action, Letter

NOT_YOU = "If this was not you, you can ignore this email: nothing changes unless the link is used."


def confirm_sign_up(url: str, hours: int) -> Letter:
    return Letter(
        subject="Confirm your email address for VRM Vault",
        paragraphs=(
            "Someone (we hope you) created a VRM Vault with this email address.",
            f"To finish, confirm the address within {hours} hours:",
        ),
        action=Action("Confirm my address", url),
        after=(NOT_YOU,),
    )


def sign_up_taken(signin_url: str, reset_url: str) -> Letter:
    return Letter(
        subject="Someone tried to sign up to VRM Vault with your address",
        paragraphs=(
            "Someone tried to create a VRM Vault with this email address, which already has "
            "one. No new account was made and nothing in your vault changed.",
            f"If it was you, sign in instead: {signin_url}",
            f"If you forgot your password: {reset_url}",
        ),
        after=("If it was not you, you need do nothing.",),
    )


def sign_up_unconfirmed(url: str, hours: int) -> Letter:
    return Letter(
        subject="Confirm your email address for VRM Vault",
        paragraphs=(
            "Someone tried to sign up again with this email address, whose vault is waiting "
            "for its address to be confirmed. The password chosen first stays.",
            f"To finish, confirm the address within {hours} hours:",
        ),
        action=Action("Confirm my address", url),
        after=(NOT_YOU,),
    )


def reset_password(url: str, minutes: int) -> Letter:
    return Letter(
        subject="Set a new password for VRM Vault",
        paragraphs=(
            "Someone (we hope you) asked to set a new password for the VRM Vault of this "
            "email address.",
            f"The link works once, within {minutes} minutes:",
        ),
        action=Action("Set a new password", url),
        after=(NOT_YOU + " Your password stays as it is.",),
    )


def confirm_new_address(url: str, hours: int) -> Letter:
    return Letter(
        subject="Confirm your new email address for VRM Vault",
        paragraphs=(
            "Someone (we hope you) asked to make this the sign-in address of their VRM Vault.",
            f"To make the change, confirm within {hours} hours:",
        ),
        action=Action("Confirm my new address", url),
        after=(NOT_YOU,),
    )


def address_in_use(signin_url: str) -> Letter:
    return Letter(
        subject="Someone tried to use your address at VRM Vault",
        paragraphs=(
            "Someone asked to make this email address the sign-in address of another VRM "
            "Vault. It already belongs to yours, so nothing changed.",
            f"Your vault: {signin_url}",
        ),
        after=("You need do nothing.",),
    )


SECURITY_WORDS: dict[str, tuple[str, str]] = {
    "password_changed": (
        "Your VRM Vault password was changed",
        "The password of your VRM Vault was changed, and every session was signed out.",
    ),
    "email_changed": (
        "Your VRM Vault sign-in address was changed",
        "The sign-in address of your VRM Vault was changed to another address, confirmed "
        "from that address. This address no longer signs in.",
    ),
    "factor_added": (
        "A second factor was added to your VRM Vault",
        "A second factor for signing in was added to your VRM Vault.",
    ),
    "factor_removed": (
        "A second factor was removed from your VRM Vault",
        "A second factor for signing in was removed from your VRM Vault.",
    ),
    "new_device": (
        "New sign-in to your VRM Vault",
        "Your VRM Vault was signed in to from a browser it had not seen before.",
    ),
}


def security(kind: str, when: str, url: str, *, detail: str | None = None) -> Letter:
    subject, what = SECURITY_WORDS[kind]
    said = f"{what} ({when})"
    if detail:
        said = f"{what} ({detail}, {when})"
    return Letter(
        subject=subject,
        paragraphs=(said,),
        action=Action("Review your account", url),
        after=(
            "If this was you, you need do nothing. If not, set a new password at once with "
            "“Forgot your password?” on the sign-in page, and sign out everywhere.",
            "Security notices cannot be switched off.",
        ),
    )


def new_offers(count: int, url: str, unsubscribe_url: str) -> Letter:
    what = "A new offer" if count == 1 else f"{count} new offers"
    return Letter(
        subject=f"{what} on one of your intents",
        paragraphs=(f"{what} arrived on one of your intents in VRM Vault.",),
        action=Action("See the offers", url),
        after=("At most one such email an hour per intent.",),
        unsubscribe_url=unsubscribe_url,
    )


def new_connection(url: str, unsubscribe_url: str) -> Letter:
    return Letter(
        subject="A vendor is now connected to your VRM Vault",
        paragraphs=("You allowed a vendor to read some of your data.",),
        action=Action("See your connections", url),
        after=("If this was not you, revoke it there and set a new password.",),
        unsubscribe_url=unsubscribe_url,
    )


def connection_expiring(url: str, unsubscribe_url: str) -> Letter:
    return Letter(
        subject="A connection to your VRM Vault ends in a week",
        paragraphs=(
            "A vendor's permission to read some of your data ends in about a week. "
            "If you want it to go on, extend it; otherwise you need do nothing.",
        ),
        action=Action("See your connections", url),
        unsubscribe_url=unsubscribe_url,
    )
