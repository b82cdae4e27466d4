"""Pins down rxkit.speech.openai where mutation testing found it loose (issue 18)."""

from __future__ import annotations
