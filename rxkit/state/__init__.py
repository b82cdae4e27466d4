"""Conversation state stores behind one protocol."""

from .base import StateStore

__all__ = ["StateStore"]
