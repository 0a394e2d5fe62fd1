"""Routes and the ASGI app. Run with `sigingest api` (Granian) or any ASGI server:
`granian --interface asgi --factory api_stub.app:create_app`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.routing import Route

from api_stub.intake.fast import IntakeApp
from api_stub.intake.handlers import Intake, answering_errors
from api_stub.intake.openapi import openapi_route
from api_stub.intake.queue import IntakeQueue
from api_stub.metrics import observe
from api_stub.pages.confirm import confirm_routes
from api_stub.pages.routes import PetitionPages, with_pages
from api_stub.pages.unsubscribe import unsubscribe_routes
from worker.connections import async_redis_client
from worker.drain.durability import AckPolicy
from worker.keys import Keys
from worker.settings import Settings


def create_app(settings: Settings | None = None) -> Starlette:
    """The intake app. Settings are read from the environment when not given."""
    settings = settings or Settings.from_env()
    keys = Keys(settings.key_prefix, settings.shards)
    client = async_redis_client(settings)
    queue = IntakeQueue(
        client,
        keys,
        idempotency_ttl=settings.idempotency_ttl_seconds,
        max_backlog=settings.max_backlog,
        idempotency_max_keys=settings.idempotency_max_keys,
        memory_headroom=settings.redis_memory_headroom,
        ack=AckPolicy.from_settings(settings),
    )
    intake = Intake(settings, queue)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await queue.check_durability()  # ACK_DURABILITY=fsync the server cannot give: no start
        yield
        await client.aclose()

    sign = answering_errors(intake.sign)
    sign_route = Route("/petitions/{petition_id}/signatures", sign, methods=["POST"])
    routes = [
        sign_route,
        Route("/petitions/{petition_id}", answering_errors(intake.petition), methods=["GET"]),
        Route("/healthz", intake.healthz, methods=["GET"]),
        Route("/readyz", answering_errors(intake.readyz), methods=["GET"]),
    ]
    # Features beyond the intake add their routes from their own modules, one line each here.
    routes = with_pages(routes, intake)
    routes += confirm_routes(PetitionPages(intake))
    routes += unsubscribe_routes(
        settings.unsubscribe_secret, client, keys, settings.unsubscribe_secret_previous
    )
    routes.append(openapi_route(settings))
    app = IntakeApp(routes=routes, lifespan=lifespan)
    app.state.intake = intake
    tallies = observe.install(app, settings, keys)  # /metrics, request metrics, logs
    app.fast_path = (sign_route, sign, tallies)  # JSON signatures skip Starlette's layers: fast.py
    return app
