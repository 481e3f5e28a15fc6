"""Running the app under uvicorn and announcing the address on one line once it accepts connections."""

from __future__ import annotations

import logging

import uvicorn

from .app import create_app
from .config import Settings
from .worker_process import EngineSpec

READY_LINE = "Genesis is running at {url}"


class AnnouncingServer(uvicorn.Server):
    """Prints `Genesis is running at http://HOST:PORT` (the real port, also for `--port 0`)."""

    def __init__(self, config: uvicorn.Config, settings: Settings) -> None:
        super().__init__(config)
        self.settings = settings
        self.url: str | None = None

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets=sockets)
        if not self.started and self.should_exit:
            return
        port = self.settings.port
        for server in getattr(self, "servers", []):
            for sock in server.sockets:
                port = sock.getsockname()[1]
                break
        host = self.settings.host if ":" not in self.settings.host else f"[{self.settings.host}]"
        self.url = f"http://{host}:{port}"
        print(READY_LINE.format(url=self.url), flush=True)
        services = getattr(getattr(self.config.app, "state", None), "services", None)
        if services is not None:  # the same line as the app's header
            from .engines import engine_summary
            from .routes import describe_device

            statuses = services.engines.statuses()
            print(f"Engines: {engine_summary(statuses, describe_device(self.settings.device))}", flush=True)
        if self.settings.token and not self.settings.is_loopback:
            print(
                f"Access token (send as 'Authorization: Bearer <token>'): {self.settings.token}", flush=True
            )


def serve(settings: Settings, spec: EngineSpec | None = None, log_level: str = "warning") -> None:
    """Run the server in this process until Ctrl+C."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings.ensure_token()
    app = create_app(settings, spec)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
        lifespan="on",
    )
    AnnouncingServer(config, settings).run()
