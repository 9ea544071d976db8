"""``GET /metrics`` for the operator's Prometheus: every process's request and delivery counts
(``vault.metrics``) and gauges read from the database when the scrape comes.

Operator-only by a bearer token (``VRM_METRICS_TOKEN``) rather than a port of its own: the
token works the same behind every proxy and process manager, and with ``--workers N`` every
worker can answer a scrape (multiprocess mode adds all workers' counts up), where a separate
listener would need a process of its own to serve it. Without the setting the address
answers 404 as if it did not exist."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Iterator

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.exceptions import HTTPException as StarletteHTTPException

from consent.ledger.service import signing_backlog
from consent.webhooks.outbox import queue_stats
from vault.accounts.service import AccountService
from vault.metrics import CONTENT_TYPE, exposition
from vault.routing import APIRouter
from vault.runtime import Runtime

log = logging.getLogger("vrm.metrics")

router = APIRouter(include_in_schema=False)


class DatabaseGauges(Collector):
    """Read at scrape time, in one short read-only transaction of cheap statements (a partial
    index of waiting messages, two primary-key reads, a small table). Counts only: no row's
    content, nothing about a person."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "vrm_metrics_database_up", "1 when the database answered this scrape's queries."
        )
        try:
            with self.rt.sessions() as db:
                queue = queue_stats(db)
                backlog = signing_backlog(db)
                throttles = AccountService(db, self.rt).throttle_buckets()
        except Exception as exc:  # the type only: messages can carry hosts and parameters
            log.warning("metrics: database gauges unavailable (%s)", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily(
            "vrm_webhook_queue_depth",
            "Webhook messages waiting: neither delivered nor abandoned.",
            value=queue.waiting,
        )
        yield GaugeMetricFamily(
            "vrm_webhook_oldest_waiting_age_seconds",
            "How long the oldest waiting webhook message has waited (0 when none waits).",
            value=queue.oldest_age_seconds or 0.0,
        )
        yield GaugeMetricFamily(
            "vrm_ledger_unsigned_events",
            "Consent ledger events not yet in a signed checkpoint.",
            value=backlog.unsigned,
        )
        if backlog.checkpoint_age_seconds is not None:  # absent before the first checkpoint
            yield GaugeMetricFamily(
                "vrm_ledger_checkpoint_age_seconds",
                "How old the latest signed checkpoint of the consent ledger is.",
                value=backlog.checkpoint_age_seconds,
            )
        yield GaugeMetricFamily(
            "vrm_signin_throttle_buckets",
            "Accounts and client addresses with failed sign-ins counted in the current "
            "throttle window.",
            value=throttles,
        )


def _authorised(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    rt: Runtime = request.app.state.runtime
    token = rt.settings.metrics_token
    if token is None:
        raise StarletteHTTPException(404)
    if not _authorised(request, token.get_secret_value()):
        return JSONResponse(
            {"error": "not_authenticated", "detail": "Send the metrics bearer token."},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    body = await asyncio.to_thread(exposition, DatabaseGauges(rt))
    return Response(body, media_type=CONTENT_TYPE)
