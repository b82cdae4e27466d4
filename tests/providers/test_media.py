"""Documents and media in messages: attach() from bytes, paths and URLs, each API's wire shape checked by
its loopback server (a PDF and an image to each provider; audio and video where accepted), and sizes
refused before sending with a clear error."""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path

import pytest
from reactivex import operators as ops

from rxkit.errors import ConfigError
from rxkit.providers.anthropic import AnthropicProvider
from rxkit.providers.gemini import GeminiProvider
from rxkit.providers.media import check_media, media_bytes
from rxkit.providers.openai import OpenAIProvider
from rxkit.providers.openai_responses import OpenAIResponsesProvider
from rxkit.telemetry.events import EventBus
from rxkit.types import AudioPart, ChatRequest, DocumentPart, ImagePart, Message, VideoPart, attach
from tests.providers.anthropic_server import TEXT_STREAM, AnthropicServer
from tests.providers.anthropic_server import Reply as ScriptedReply
from tests.providers.gemini_server import TEXT_STREAM as GEMINI_TEXT
from tests.providers.gemini_server import GeminiServer
from tests.providers.openai_responses_server import ResponsesServer, recording
from tests.providers.openai_server import OpenAIServer
from tests.providers.openai_server import Reply as OpenAIReply

PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj "
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 72 72]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)
PDF_B64 = base64.b64encode(PDF).decode()


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
        + chunk(b"IEND", b"")
    )


PNG = _png()
PNG_B64 = base64.b64encode(PNG).decode()
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16) + b"data\x00\x00\x00\x00"


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    pdf, png = tmp_path / "report.pdf", tmp_path / "chart.png"
    pdf.write_bytes(PDF)
    png.write_bytes(PNG)
    return pdf, png


def _question(files: tuple[Path, Path]) -> Message:
    return Message.user("What does the report say about the chart?", attach(files[0]), attach(files[1]))


# ---------------------------------------------------------------- attach


def test_attach_from_bytes_paths_and_urls(files: tuple[Path, Path]) -> None:
    assert attach(PDF) == DocumentPart(data=PDF_B64)  # told by its signature
    assert attach(files[0]) == DocumentPart(data=PDF_B64, filename="report.pdf")
    assert attach(files[1]) == ImagePart(data=PNG_B64, mime_type="image/png")
    assert attach(WAV) == AudioPart(data=base64.b64encode(WAV).decode(), format="wav")
    assert attach("https://example.com/paper.pdf") == DocumentPart(url="https://example.com/paper.pdf")
    assert attach("gs://bucket/clip.mp4") == VideoPart(url="gs://bucket/clip.mp4")
    assert attach("https://example.com/x?sig=1", "image/webp").mime_type == "image/webp"
    assert media_bytes(PDF_B64) == len(PDF)
    with pytest.raises(ConfigError, match="cannot tell the media type of these bytes"):
        attach(b"\x00\x01\x02")
    with pytest.raises(ConfigError, match="cannot read"):
        attach(files[0].parent / "missing.pdf")


# ---------------------------------------------------------------- each API


async def test_anthropic_gets_document_and_image_blocks(files: tuple[Path, Path]) -> None:
    async with AnthropicServer() as server:
        server.push(ScriptedReply(events=TEXT_STREAM), ScriptedReply(events=TEXT_STREAM))
        provider = AnthropicProvider("claude-sonnet-4-5", api_key=server.api_key, base_url=server.url, bus=EventBus())
        try:
            await provider.stream(ChatRequest(messages=[_question(files)])).pipe(ops.to_list())
            by_url = Message.user(
                "And this?", attach("https://example.com/paper.pdf"), attach("https://example.com/a.png")
            )
            await provider.stream(ChatRequest(messages=[by_url])).pipe(ops.to_list())
        finally:
            await provider.aclose()
    assert server.requests[0].body["messages"][0]["content"] == [
        {"type": "text", "text": "What does the report say about the chart?"},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF_B64}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
    ]
    assert server.requests[1].body["messages"][0]["content"][1:] == [
        {"type": "document", "source": {"type": "url", "url": "https://example.com/paper.pdf"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
    ]


async def test_gemini_gets_inline_data_file_data_audio_and_video(files: tuple[Path, Path]) -> None:
    async with GeminiServer() as server:
        server.push(ScriptedReply(events=GEMINI_TEXT))
        provider = GeminiProvider("gemini-2.5-flash", api_key=server.api_key, base_url=server.url, bus=EventBus())
        question = _question(files)
        extra = [attach(WAV), attach("https://generativelanguage.googleapis.com/v1beta/files/abc123", "video/mp4")]
        message = question.model_copy(update={"content": [*question.content, *extra]})
        try:
            await provider.stream(ChatRequest(messages=[message])).pipe(ops.to_list())
        finally:
            await provider.aclose()
    assert server.requests[0].body["contents"][0]["parts"] == [
        {"text": "What does the report say about the chart?"},
        {"inlineData": {"mimeType": "application/pdf", "data": PDF_B64}},
        {"inlineData": {"mimeType": "image/png", "data": PNG_B64}},
        {"inlineData": {"mimeType": "audio/wav", "data": base64.b64encode(WAV).decode()}},
        {
            "fileData": {
                "mimeType": "video/mp4",
                "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc123",
            }
        },
    ]


async def test_openai_chat_gets_file_image_url_and_input_audio(files: tuple[Path, Path]) -> None:
    async with OpenAIServer() as server:
        server.push(OpenAIReply())
        provider = OpenAIProvider("gpt-4.1-mini", base_url=server.url, api_key=server.api_key, compatible=False)
        question = _question(files)
        message = question.model_copy(update={"content": [*question.content, attach(WAV)]})
        try:
            await provider.stream(ChatRequest(messages=[message])).pipe(ops.to_list())
            with pytest.raises(ConfigError, match="not by URL; use the openai-responses provider"):
                provider.build_request(
                    ChatRequest(messages=[Message.user("x", attach("https://e.com/a.pdf"))]), stream=True
                )
            with pytest.raises(ConfigError, match="VideoPart"):
                provider.build_request(
                    ChatRequest(messages=[Message.user("x", VideoPart(url="gs://b/v.mp4"))]), stream=True
                )
        finally:
            await provider.aclose()
    assert server.requests[0].body["messages"][0]["content"] == [
        {"type": "text", "text": "What does the report say about the chart?"},
        {"type": "file", "file": {"filename": "report.pdf", "file_data": f"data:application/pdf;base64,{PDF_B64}"}},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
        {"type": "input_audio", "input_audio": {"data": base64.b64encode(WAV).decode(), "format": "wav"}},
    ]


async def test_openai_responses_gets_input_file_and_input_image(files: tuple[Path, Path]) -> None:
    async with ResponsesServer() as server:
        server.push(ScriptedReply(events=recording("text")))
        provider = OpenAIResponsesProvider("gpt-4.1-mini", api_key=server.api_key, base_url=server.url + "/v1")
        question = _question(files)
        message = question.model_copy(update={"content": [*question.content, attach("https://example.com/paper.pdf")]})
        try:
            await provider.stream(ChatRequest(messages=[message])).pipe(ops.to_list())
        finally:
            await provider.aclose()
    assert server.requests[0].body["input"][0]["content"] == [
        {"type": "input_text", "text": "What does the report say about the chart?"},
        {"type": "input_file", "filename": "report.pdf", "file_data": f"data:application/pdf;base64,{PDF_B64}"},
        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG_B64}", "detail": "auto"},
        {"type": "input_file", "file_url": "https://example.com/paper.pdf"},
    ]


def test_unsupported_media_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="does not accept audio"):
        AnthropicProvider("m", api_key="k").build_request(
            ChatRequest(messages=[Message.user("x", attach(WAV))]), stream=True
        )
    with pytest.raises(ConfigError, match="does not accept video"):
        AnthropicProvider("m", api_key="k").build_request(
            ChatRequest(messages=[Message.user("x", VideoPart(url="gs://b/v.mp4"))]), stream=True
        )
    with pytest.raises(ConfigError, match="takes PDF and plain-text documents, not 'text/csv'"):
        AnthropicProvider("m", api_key="k").build_request(
            ChatRequest(messages=[Message.user("x", DocumentPart(data="YQ==", mime_type="text/csv"))]), stream=True
        )


# ---------------------------------------------------------------- sizes


def _big(mib: float) -> str:
    return "A" * int(mib * 1024 * 1024 * 4 / 3)


@pytest.mark.parametrize(
    ("api", "message", "error"),
    [
        (
            "anthropic",
            Message.user("x", ImagePart(data=_big(6))),
            r"part 1 \(image/png\) is 6.0 MiB; the API takes at most 5 MiB per image",
        ),
        (
            "anthropic",
            Message.user("x", *[DocumentPart(data=_big(11))] * 3),
            r"inline media of this request is 33.0 MiB; .* 32 MiB per request",
        ),
        ("gemini", Message.user("x", DocumentPart(data=_big(21))), r"20 MiB per request"),
        (
            "openai",
            Message.user("x", DocumentPart(data=_big(20)), DocumentPart(data=_big(13))),
            r"documents of this request is 33.0 MiB; .* 32 MiB of files",
        ),
        (
            "openai",
            Message.user("x", ImagePart(data=_big(51))),
            r"images of this request is 51.0 MiB; .* 50 MiB of images",
        ),
    ],
)
def test_sizes_are_checked_against_each_apis_limits(api: str, message: Message, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        check_media([message], api)


async def test_a_too_large_image_is_refused_before_anything_is_sent() -> None:
    async with AnthropicServer() as server:
        provider = AnthropicProvider("claude-sonnet-4-5", api_key=server.api_key, base_url=server.url, bus=EventBus())
        try:
            with pytest.raises(ConfigError, match="at most 5 MiB per image"):
                await provider.stream(ChatRequest(messages=[Message.user("x", ImagePart(data=_big(5.5)))])).pipe(
                    ops.to_list()
                )
        finally:
            await provider.aclose()
    assert server.requests == []  # nothing went over the wire
    check_media([Message.user("x", ImagePart(data=_big(4.9)), ImagePart(url="https://e.com/huge.png"))], "anthropic")
