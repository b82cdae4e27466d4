"""Stage operators, imported as ``rxkit.operators``.

Each operator lives in its own private module and returns a
:class:`~rxkit.stage.Stage`, so it goes straight into ``pipe()``.
"""

from ._assemble_prompt import assemble_prompt
from ._barge_in import BARGE_IN_STRATEGIES, BargeIn, barge_in
from ._bounded_buffer import BufferStage, bounded_buffer
from ._coalesce import coalesce
from ._duplex_gate import duplex_gate
from ._floor import Floor, ReplyStarted
from ._llm import llm
from ._load_state import load_state
from ._playout import playout
from ._save_state import save_state
from ._sentence_chunker import Sentence, sentence_chunker, strip_markdown
from ._synthesize import synthesize
from ._tool_loop import tool_loop
from ._transcribe import transcribe
from ._turn_detector import turn_detector
from ._vad import vad
from ._validate_input import validate_input
from ._validate_output import validate_output

__all__: list[str] = []
__all__ += ["assemble_prompt", "validate_input", "validate_output"]  # prompt assembly and validation (text mode)
__all__ += ["BufferStage", "bounded_buffer", "coalesce"]  # backpressure: bounded buffering, text coalescing
__all__ += ["llm", "load_state", "save_state"]  # text-mode turns: history in, answer streamed, turn saved
__all__ += ["turn_detector", "vad"]  # voice: VAD tagging and turn detection (speech events, utterances)
__all__ += ["Sentence", "sentence_chunker", "strip_markdown", "synthesize", "transcribe"]  # voice: STT, sentences, TTS
__all__ += ["tool_loop"]  # tools: model -> tool calls -> results -> model, round after round
# voice turn-taking: who holds the floor, barge-in, half duplex, the output sink
__all__ += ["BARGE_IN_STRATEGIES", "BargeIn", "Floor", "ReplyStarted", "barge_in", "duplex_gate", "playout"]
