"""Stage operators, imported as ``rxkit.operators``.

Each operator lives in its own private module and returns a
:class:`~rxkit.graph.stage.Stage`, so it goes straight into ``pipe()``.
"""

from rxkit.operators._assemble_prompt import assemble_prompt
from rxkit.operators._barge_in import BARGE_IN_STRATEGIES, BargeIn, FalseInterruption, barge_in
from rxkit.operators._bounded_buffer import BufferStage, bounded_buffer
from rxkit.operators._coalesce import coalesce
from rxkit.operators._duplex import duplex, heard
from rxkit.operators._duplex_gate import duplex_gate
from rxkit.operators._field_text import field_text
from rxkit.operators._guardrail import Redactor, guardrail
from rxkit.operators._llm import llm
from rxkit.operators._load_state import load_state
from rxkit.operators._one_turn_at_a_time import MAX_PENDING, one_turn_at_a_time
from rxkit.operators._parse_structured import parse_structured
from rxkit.operators._playout import playout
from rxkit.operators._save_state import save_state
from rxkit.operators._sentence_chunker import sentence_chunker, strip_markdown
from rxkit.operators._synthesize import synthesize
from rxkit.operators._tool_loop import tool_loop
from rxkit.operators._transcribe import transcribe
from rxkit.operators._turn_detector import turn_detector
from rxkit.operators._vad import vad
from rxkit.operators._validate_input import validate_input
from rxkit.operators._validate_output import validate_output

__all__: list[str] = []
__all__ += [
    "Redactor",
    "assemble_prompt",
    "guardrail",
    "validate_input",
    "validate_output",
]  # prompt assembly and validation (text mode)
__all__ += ["BufferStage", "bounded_buffer", "coalesce"]  # backpressure: bounded buffering, text coalescing
__all__ += ["llm", "load_state", "save_state"]  # text-mode turns: history in, answer streamed, turn saved
__all__ += ["MAX_PENDING", "one_turn_at_a_time"]  # the turn machine: one turn at a time, an urgent input cancels
__all__ += ["turn_detector", "vad"]  # voice: VAD tagging and turn detection (speech events, utterances)
__all__ += ["sentence_chunker", "strip_markdown", "synthesize", "transcribe"]  # voice: STT, sentences, TTS
__all__ += ["field_text", "parse_structured"]  # typed answers: partial values as the text streams, one field as text
__all__ += ["tool_loop"]  # tools: model -> tool calls -> results -> model, round after round
# voice turn-taking: who holds the floor, barge-in, half duplex, the output sink
__all__ += ["BARGE_IN_STRATEGIES", "BargeIn", "FalseInterruption", "barge_in", "duplex_gate", "playout"]
__all__ += ["duplex", "heard"]  # duplex: a speech-to-speech session as a stage, told what was heard
