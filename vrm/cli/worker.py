"""``vrm worker``: webhook delivery and the scheduled jobs the composition root lists."""

from __future__ import annotations

import asyncio
import signal
import threading
from typing import Annotated

import typer
from sqlalchemy.exc import OperationalError

from consent.webhooks.attempts import DeliveryOutcome
from consent.webhooks.delivery import Dispatcher, deliver_due
from vault.jobs import Job, JobFailed
from vault.runtime import Runtime
from vault.settings import get_settings
from vrm.cli.common import service
from vrm.logs import configure as configure_logging
from vrm.wiring import FREQUENT_JOBS, JOBS


def run_job(rt: Runtime, job: Job) -> bool:
    """One job in a transaction of its own; a failure is reported and the next job runs.
    True when the job did some work (it returned a line)."""
    try:
        with rt.sessions() as session, session.begin():
            line = job.run(session, rt)
    except JobFailed as exc:
        typer.secho(f"error: {exc.message}", fg="red", err=True)
        return False
    except OperationalError as exc:
        typer.echo(f"database unavailable ({type(exc.orig).__name__}); retrying")
        return False
    except Exception as exc:  # keep the others running; say it on every pass until fixed
        # The type only: an exception's text can carry bound SQL parameters.
        typer.secho(f"error: {job.name} failed ({type(exc).__name__})", fg="red", err=True)
        return False
    if line:
        typer.echo(line)
    return bool(line)


def run_jobs(rt: Runtime) -> None:
    for job in JOBS:
        run_job(rt, job)


def report(outcome: DeliveryOutcome) -> None:
    status = f"HTTP {outcome.status_code}" if outcome.status_code else "no response"
    line = f"{outcome.message_id} {outcome.client_id} {outcome.event_type} {status}"
    line += f" attempt {outcome.attempt}: {outcome.result}"
    if outcome.next_attempt_at is not None:
        line += f", next at {outcome.next_attempt_at:%Y-%m-%d %H:%M:%S} UTC"
    if outcome.error and outcome.status_code is None:
        line += f" ({outcome.error})"
    typer.echo(line)


JOBS_SECONDS = 5.0
"""The scheduled jobs run at most this often (closing intents on time needs well under a
minute). Webhook delivery starts as soon as the transaction that queued a message commits
(``consent.webhooks.wake``), and looks every ``interval`` in any case (one indexed read of
the waiting ones), in case a wake-up was lost."""


class Background:
    """Webhook delivery (an event loop on the calling thread) and the scheduled jobs (a thread
    of their own, so that no endpoint, however slow, holds them up), until :meth:`stop`:
    what ``vrm worker`` runs, and what ``vrm serve --with-worker`` runs beside the service."""

    def __init__(self, rt: Runtime, interval: float) -> None:
        self.rt = rt
        self.interval = interval
        self.stopping = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stopped = asyncio.Event()

    def stop(self) -> None:
        """Stop after the delivery under way; from any thread (a signal handler, the server's
        shutdown)."""
        self.stopping.set()
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopped.set)

    def run(self) -> None:
        """Blocks until :meth:`stop` is called."""

        def jobs() -> None:
            while not self.stopping.is_set():
                run_jobs(self.rt)
                self.stopping.wait(max(self.interval, JOBS_SECONDS))

        def every(job: Job, seconds: float) -> None:
            # Again at once while it finds work (under load, each run takes what arrived
            # during the one before), every ``seconds`` when idle.
            while not self.stopping.is_set():
                if not run_job(self.rt, job):
                    self.stopping.wait(seconds)

        scheduler = threading.Thread(target=jobs, name="vrm-jobs")
        frequent = [
            threading.Thread(target=every, args=(job, seconds), name=f"vrm-job-{n}")
            for n, (job, seconds) in enumerate(FREQUENT_JOBS)
        ]
        scheduler.start()
        for thread in frequent:
            thread.start()
        try:
            dispatcher = Dispatcher(
                self.rt.sessions,
                self.rt,
                on_outcome=report,
                should_stop=self.stopping.is_set,
                on_problem=typer.echo,
            )
            self._loop.run_until_complete(dispatcher.run(self.interval, self._stopped))
        finally:
            self.stopping.set()
            scheduler.join()
            for thread in frequent:
                thread.join()
            self._loop.close()


def worker(
    once: Annotated[
        bool, typer.Option(help="Deliver what is due now, then exit (instead of looping).")
    ] = False,
    interval: Annotated[
        float,
        typer.Option(
            min=0.1,
            max=3600,
            help="Seconds between looks at the outbox besides those a queued message "
            f"wakes (the jobs run every {JOBS_SECONDS:g} s, or this if longer).",
        ),
    ] = 1.0,
) -> None:
    """Deliver signed webhooks and run the scheduled jobs (expiry, closing, checkpoints, mail).

    Webhooks that fail are retried with backoff; the jobs are those ``vrm.wiring`` lists.
    Runs until SIGINT or SIGTERM; the message being delivered is finished first. Several
    workers may run at once: each message is claimed by exactly one of them.
    """
    configure_logging(get_settings().log_format)
    with service() as rt:
        if once:
            run_jobs(rt)
            while deliver_due(rt.sessions, rt, on_outcome=report):
                pass
            return
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        background = Background(rt, interval)

        def request_stop(signum: int, _frame: object) -> None:
            typer.echo(f"received {signal.Signals(signum).name}; stopping after this delivery")
            background.stop()

        for sig in previous:
            signal.signal(sig, request_stop)
        typer.echo(
            f"webhook worker started; looking at the outbox when messages are queued, "
            f"and every {interval:g} s"
        )
        try:
            background.run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    typer.echo("webhook worker stopped")
