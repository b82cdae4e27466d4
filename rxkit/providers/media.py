"""Media sizes checked before sending: each API's documented limits, one table.

A request whose images, documents, audio or video are over what the API
takes would be refused after the upload (or time out); :func:`check_media`
says so before anything is sent, naming the part, its size and the limit.
Sizes are of the decoded bytes (base64 data is measured without decoding);
media given by URL is fetched by the API and not counted.

>>> from rxkit.types import ImagePart, Message
>>> big = Message(role="user", content=[ImagePart(data="A" * 8_000_000)])
>>> check_media([big], "anthropic")
Traceback (most recent call last):
...
rxkit.errors.ConfigError: anthropic: message 0, part 0 (image/png) is 5.7 MiB; the API takes at most 5 MiB per image
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rxkit.errors import ConfigError
from rxkit.types import AudioPart, DocumentPart, ImagePart, Message, VideoPart

__all__ = ["LIMITS", "MediaLimits", "check_media", "media_bytes"]

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class MediaLimits:
    """An API's limits in bytes; None: not limited here (the request limit still holds)."""

    image: int | None = None  # per image
    document: int | None = None  # per document
    images_total: int | None = None  # all images of a request
    documents_total: int | None = None  # all documents of a request
    request: int | None = None  # all inline media of a request


LIMITS: dict[str, MediaLimits] = {
    # OpenAI (Chat Completions and Responses): "up to 50 MB total payload size per request" of images
    # (vision guide); "up to 32MB of total content in a single request, across multiple file inputs"
    # (file inputs guide).
    "openai": MediaLimits(images_total=50 * MiB, documents_total=32 * MiB),
    # Anthropic Messages: 5 MB per image (API), 32 MB per request (PDF support guide, request size limit).
    "anthropic": MediaLimits(image=5 * MiB, request=32 * MiB),
    # Gemini generateContent: inline data must keep the whole request under 20 MB (larger files go
    # through the File API, sent as fileData); PDFs at most 50 MB.
    "gemini": MediaLimits(document=50 * MiB, request=20 * MiB),
}


def media_bytes(data: str) -> int:
    """The decoded size of base64 ``data``, without decoding it."""
    n = len(data)
    return n * 3 // 4 - (data.endswith("=") + data.endswith("=="))


def check_media(messages: Sequence[Message], api: str) -> None:
    """Raise a :class:`~rxkit.errors.ConfigError` when inline media in ``messages`` is over ``api``'s limits."""
    limits = LIMITS[api]
    images = documents = total = 0
    for i, message in enumerate(messages):
        for j, part in enumerate(message.content):
            if not isinstance(part, (ImagePart, DocumentPart, AudioPart, VideoPart)):
                continue
            data = part.data
            if data is None and isinstance(part, (ImagePart, DocumentPart, VideoPart)):
                url = part.url or ""
                data = url.partition(",")[2] if url.startswith("data:") else None
            if data is None:
                continue
            size = media_bytes(data)
            where = f"{api}: message {i}, part {j} ({getattr(part, 'mime_type', None) or 'audio'})"
            total += size
            if isinstance(part, ImagePart):
                images += size
                _over(where, size, limits.image, "per image")
                _over(f"{api}: the images of this request", images, limits.images_total, "of images per request")
            elif isinstance(part, DocumentPart):
                documents += size
                _over(where, size, limits.document, "per document")
                _over(
                    f"{api}: the documents of this request", documents, limits.documents_total, "of files per request"
                )
            _over(f"{api}: the inline media of this request", total, limits.request, "per request")


def _over(where: str, size: int, limit: int | None, what: str) -> None:
    if limit is not None and size > limit:
        raise ConfigError(f"{where} is {size / MiB:.1f} MiB; the API takes at most {limit // MiB} MiB {what}")
