"""HttpClient on its own: the session it makes per event loop, and what becomes of the old one.

Calls through the client (retries, deadlines, errors, events) are tested
with real loopback servers in test_faults.py, test_hot.py and
test_custom_provider.py.
"""

from __future__ import annotations

import asyncio

import aiohttp

from rxkit.providers.client import HttpClient, HTTPOptions, default_session


def test_one_session_per_event_loop() -> None:
    made: list[aiohttp.ClientSession] = []

    def session_factory(options: HTTPOptions) -> aiohttp.ClientSession:
        made.append(default_session(options))
        return made[-1]

    client = HttpClient(session_factory=session_factory)

    async def use() -> aiohttp.ClientSession:
        session = client.session()
        assert client.session() is session and not client.closed
        return session

    first = asyncio.run(use())
    second = asyncio.run(use())  # a second loop: the first loop's session cannot serve it
    assert len(made) == 2 and first is not second
    assert first.closed and second.closed  # each closed when its loop ended
    assert client.closed


def test_a_session_whose_loop_ended_unfinalised_is_dropped_with_its_connections() -> None:
    """A loop closed without asyncio.run's shutdown (no async-generator finalisers) leaves its session open;
    the next loop's first call drops it. Dropping reaches into aiohttp's BaseConnector._close: this fails
    if an upgrade moves it."""
    client = HttpClient()

    async def use() -> aiohttp.ClientSession:
        return client.session()

    loop = asyncio.new_event_loop()
    try:
        first = loop.run_until_complete(use())
    finally:
        loop.close()  # its sockets are gone with it, and nothing of it can be awaited any more
    connector = first.connector
    assert connector is not None and not first.closed
    second = asyncio.run(use())
    assert second is not first
    assert connector.closed, "aiohttp changed BaseConnector._close: a dead loop's connections are not closed"
    assert first.closed, "a dropped session still looks open (ClientSession.detach)"


async def test_aclose_closes_the_session_and_a_later_use_opens_another() -> None:
    client = HttpClient(HTTPOptions(max_concurrency=3))
    assert client.closed  # nothing opened before the first use
    first = client.session()
    assert first.connector is not None and first.connector.limit == 3
    await client.aclose()
    assert first.closed and client.closed
    second = client.session()
    assert second is not first and not client.closed
    await client.aclose()
