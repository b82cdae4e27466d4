"""B7's instructor row, run by ``bench_b7_partial`` in a throwaway venv that has ``instructor`` (not rxkit's venv).

instructor pins openai and jiter to versions that conflict with rxkit's, so
it lives in its own interpreter. This script imports neither rxkit nor the
tests; it speaks JSON lines on stdin/stdout. Each request
``{"tokens": [...], "sample": 0, "clock": "wall"}`` is answered with
``{"seconds": S, "steps": N, "final": {...}}``:

* ``sample == 0``: instructor's own partial streaming, end to end: a fake
  OpenAI stream of ``ChatCompletionChunk`` objects carrying the tokens as tool
  call argument deltas (instructor's default mode, ``Mode.TOOLS``), read by
  ``Partial[Order].from_streaming_response`` with the OpenAI tools handler's
  stream extractor, one partial ``Order`` per chunk. ``S`` is the time to
  consume that generator (the chunks are built before the clock starts).
* ``sample == K``: the per-chunk step alone (``process_potential_object`` on
  the accumulated text, what ``model_from_chunks`` does for every chunk),
  timed on K evenly spaced prefixes: the same mean cost per token, for sizes
  where the quadratic whole run would take minutes. ``S`` is scaled to all
  tokens.

``final`` is the last partial's ``model_dump()``, for the caller to check
that both sides parsed the same answer into the same model.
"""

from __future__ import annotations

import json
import sys
import time

from instructor.dsl.partial import Partial
from instructor.mode import Mode
from instructor.v2.dsl.partial import process_potential_object
from instructor.v2.providers.openai.handlers import OpenAIToolsHandler
from openai.types.chat import ChatCompletionChunk
from pydantic import BaseModel


class Item(BaseModel):  # the same models as bench_b7_partial (the caller checks the final values agree)
    name: str
    qty: int
    note: str


class Order(BaseModel):
    id: str
    items: list[Item]
    urgent: bool


def chunk(arguments: str) -> ChatCompletionChunk:
    call = {"index": 0, "function": {"arguments": arguments}}
    choice = {"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}
    body = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [choice]}
    return ChatCompletionChunk.model_validate(body)


def run(tokens: list[str], sample: int, clock: str) -> dict[str, object]:
    now = time.process_time if clock == "cpu" else time.perf_counter
    partial_order = Partial[Order]
    if sample:
        model = partial_order.get_partial_model()
        text, ends = "", []
        for t in tokens:
            text += t
            ends.append(len(text))
        picks = sorted({ends[(i * len(ends)) // sample] for i in range(sample)} | {ends[-1]})
        spent, last = 0.0, None
        for end in picks:
            t0 = now()
            last = process_potential_object(text[:end], "trailing-strings", model)
            spent += now() - t0
        return {"seconds": spent / len(picks) * len(tokens), "steps": len(picks), "final": last.model_dump()}
    stream = [chunk(t) for t in tokens]
    extractor = OpenAIToolsHandler()
    extractor.mode = Mode.TOOLS
    t0 = now()
    last = None
    steps = 0
    for partial in partial_order.from_streaming_response(stream, stream_extractor=extractor.extract_streaming_json):
        last = partial
        steps += 1
    spent = now() - t0
    return {"seconds": spent, "steps": steps, "final": last.model_dump() if last is not None else None}


def main() -> None:
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        print(json.dumps(run(request["tokens"], request.get("sample", 0), request.get("clock", "wall"))), flush=True)


if __name__ == "__main__":
    main()
