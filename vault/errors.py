"""One base error, rendered as ``{"error": code, "detail": sentence}`` for the API."""

from __future__ import annotations

from typing import Any

from vault.schemas import ErrorBody


class VaultError(Exception):
    """A failure a caller can act on. ``code`` is stable; ``message`` is for people."""

    status_code = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        status_code: int | None = None,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        if code is not None:
            self.code = code
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.message}


class NotFound(VaultError):
    """There is nothing with this id that you may see."""

    status_code = 404
    code = "not_found"


class NotAuthenticated(VaultError):
    """Sign in first."""

    status_code = 401
    code = "not_authenticated"


class Forbidden(VaultError):
    """You may not do this."""

    status_code = 403
    code = "forbidden"


class Conflict(VaultError):
    """The request conflicts with the current state."""

    status_code = 409
    code = "conflict"


class InvalidInput(VaultError):
    """Input that parsed but breaks a rule; the field says which one."""

    status_code = 400
    code = "invalid_input"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def body(self) -> dict[str, Any]:
        body = super().body()
        if self.field:
            body["field"] = self.field
        return body


class PayloadTooLarge(VaultError):
    """The request body is larger than the service accepts."""

    status_code = 413
    code = "payload_too_large"


class VerificationFailed(VaultError):
    """A signature, proof, checkpoint or receipt that does not verify; the message says why."""

    status_code = 400
    code = "verification_failed"


class ServiceFault(VaultError):
    """The service itself cannot do its work (settings, keys, stored data); for operators."""

    status_code = 500
    code = "server_error"


class TooManyRequests(VaultError):
    """Too many requests: wait as long as Retry-After says."""

    status_code = 429
    code = "too_many_requests"


def error_responses(*errors: type[VaultError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries for the errors an endpoint can raise.

    Errors sharing a status code are listed together, each with its ``error`` code.
    """

    by_status: dict[int, list[str]] = {}
    for err in errors:
        line = f"`{err.code}`: {' '.join((err.__doc__ or err.code).split())}"
        if line not in by_status.setdefault(err.status_code, []):
            by_status[err.status_code].append(line)
    return {
        status: {"model": ErrorBody, "description": " \n".join(lines)}
        for status, lines in by_status.items()
    }


RETRY_AFTER_SECONDS = 5
"""What a 503 asks a caller to wait before trying again."""


class ServiceUnavailable(VaultError):
    """The service cannot answer now (its database is unreachable); try again shortly."""

    status_code = 503
    code = "service_unavailable"

    def __init__(
        self,
        message: str = "The service is briefly unavailable. Nothing was changed; please try "
        "again in a few seconds.",
    ) -> None:
        super().__init__(message, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
