"""The real embedded model server, started once for the whole test session.

Loaded as a pytest plugin from tests/conftest.py. Tests that need a real
OpenAI-compatible peer ask for ``local_server`` (its base URL,
``http://127.0.0.1:PORT/v1``) or ``local_model_server`` (the
:class:`~rxkit.providers.local.LocalModelServer` itself). The server answers
one request at a time, so tests using it must not run requests concurrently
and expect them to overlap.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rxkit.providers.local import LocalModelServer


@pytest.fixture(scope="session")
def local_model_server() -> Iterator[LocalModelServer]:
    """One running SmolLM2-135M-Instruct server for the session, stopped at its end."""
    server = LocalModelServer(progress=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def local_server(local_model_server: LocalModelServer) -> str:
    """The base URL of the shared local server, ``http://127.0.0.1:PORT/v1``."""
    return local_model_server.base_url
