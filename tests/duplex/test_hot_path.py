"""The duplex hot path: what one audio block costs on its way to the socket (issue 15)."""

from __future__ import annotations

import asyncio
import base64
import statistics
import tracemalloc
from typing import Any

import orjson

from rxkit.audio.convert import FrameConverter
from rxkit.duplex import GeminiLive, OpenAIRealtime
from rxkit.duplex.sending import AudioEncoder
from rxkit.elements import AudioFrame


class Socket:
    """Does with a frame what aiohttp's client does (a str encoded, the payload copied as it is masked)."""

    closed = False

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    async def send_str(self, data: str, compress: int | None = None) -> None:
        self.frames.append(bytes(bytearray(data.encode("utf-8"))))

    async def send_frame(self, message: bytes, opcode: Any, compress: int | None = None) -> None:
        self.frames.append(bytes(bytearray(message)))

    async def close(self) -> None:
        pass


def test_the_reused_buffer_builds_exactly_the_protocols_audio_event() -> None:
    for session in (OpenAIRealtime(api_key="sk-test-000000000000"), GeminiLive(api_key="k")):
        encode = AudioEncoder(session.audio_prefix, session.audio_suffix)
        for size in (960, 960, 640, 962, 2, 960):  # same size (copied in place), other sizes (resized)
            pcm = bytes(range(256)) * (size // 256) + bytes(size % 256)
            text = bytes(encode(pcm))
            assert text.decode() == session.audio_message(pcm)
            event = orjson.loads(text)
            data = event["audio"] if "audio" in event else event["realtimeInput"]["audio"]["data"]
            assert base64.b64decode(data) == pcm


async def test_blocks_queued_before_the_writer_runs_go_out_in_order_in_one_wake_up() -> None:
    session = OpenAIRealtime(api_key="sk-test-000000000000")
    socket = Socket()
    session.outbox.open()
    writer = asyncio.get_running_loop().create_task(session.outbox.write(socket))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    blocks = [bytes([k]) * 960 for k in range(10)]
    for pcm in blocks:
        session.send_audio(pcm)
    session.send([{"type": "input_audio_buffer.commit"}])
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert [base64.b64decode(orjson.loads(f)["audio"]) for f in socket.frames[:10]] == blocks
    assert orjson.loads(socket.frames[10]) == {"type": "input_audio_buffer.commit"}
    writer.cancel()


async def test_a_mic_block_on_its_way_to_the_socket_holds_little_memory() -> None:
    # 20 ms at 16 kHz in, resampled to 24 kHz (960 bytes), base64 (1280), the frame copied as it is masked (1325):
    # about 3.6 KB at once with this stand-in socket. Before the reused buffers (numpy temporaries, the JSON text
    # as str and as UTF-8) a block held 14.8 KB.
    session = OpenAIRealtime(api_key="sk-test-000000000000")
    convert = FrameConverter(24000, 1)
    socket = Socket()
    session.outbox.open()
    writer = asyncio.get_running_loop().create_task(session.outbox.write(socket))  # type: ignore[arg-type]
    frame = AudioFrame(bytes(640), 16000)
    peaks = []
    tracemalloc.start()
    try:
        for k in range(80):
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            session.send_audio(convert(frame).pcm)
            for _ in range(3):
                await asyncio.sleep(0)
            socket.frames.clear()
            if k >= 20:  # warmed up: plans and buffers made
                peaks.append(tracemalloc.get_traced_memory()[1] - base)
    finally:
        tracemalloc.stop()
        writer.cancel()
    assert statistics.median(peaks) < 6000
