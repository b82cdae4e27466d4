"""Fixtures of the duplex tests: the real recorded speech of the audio tests."""

from tests.audio.conftest import librivox

__all__ = ["librivox"]
