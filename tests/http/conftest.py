"""A local aiohttp server on 127.0.0.1 (an OS-chosen port) whose handler each test scripts."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trustme
from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class LocalServer:
    """An aiohttp application with one catch-all route that calls ``handler``; counts requests and the
    distinct client connections they came on."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.handler: Handler = self._ok
        self.requests: list[tuple[str, str, bytes]] = []
        self.connections: set[tuple[str, int]] = set()
        self.release = asyncio.Event()
        self._tls = tls
        self._runner: web.AppRunner | None = None
        self.port = 0

    @staticmethod
    async def _ok(request: web.Request) -> web.StreamResponse:
        return web.json_response({"ok": True})

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append((request.method, request.path, body))
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer is not None:
            self.connections.add((peer[0], peer[1]))
        return await self.handler(request)

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}"

    async def start(self) -> LocalServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._tls)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    """A plain-HTTP local server."""
    local = await LocalServer().start()
    yield local
    await local.stop()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A private certificate authority for the TLS tests."""
    return trustme.CA()


@pytest.fixture
async def tls_server(ca: trustme.CA) -> AsyncIterator[LocalServer]:
    """An HTTPS local server whose certificate the private authority signed (for 127.0.0.1)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    local = await LocalServer(tls=context).start()
    yield local
    await local.stop()
