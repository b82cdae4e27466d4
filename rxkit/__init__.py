"""rxkit: a streaming LLM runtime built as a dataflow graph on reactive streams.

>>> import rxkit, reactivex.operators as ops
>>> rxkit.Graph.chain(ops.map(str.upper)).run(["hi"])
['HI']
"""

from rxkit.buffering import BoundedBuffer, OverflowPolicy
from rxkit.elements import (
    AudioFrame,
    Control,
    Element,
    EndOfStream,
    EndOfTurn,
    ErrorElement,
    ImageFrame,
    Interrupt,
    MessageElement,
    PlaybackFinished,
    PlaybackStarted,
    ReasoningDelta,
    ReplyStarted,
    ReplyTranscript,
    Sentence,
    SpeechStarted,
    SpeechStopped,
    TextDelta,
    ToolCallDelta,
    ToolCallElement,
    Transcript,
    Utterance,
    VadFrame,
    is_control,
    is_urgent,
)
from rxkit.errors import RxkitError
from rxkit.graph import INPUT, Graph, Stage, StageKind, arun, as_observable, as_stage, astream, run, stage
from rxkit.telemetry import EventBus, Metrics, default_bus
from rxkit.turn import Turn
from rxkit.types import (
    ChatRequest,
    ChatResponse,
    CostInfo,
    Message,
    StreamChunk,
    ToolCall,
    ToolDescriptor,
    Usage,
    attach,
)

__version__ = "0.1.0"

__all__ = [
    "INPUT",
    "AudioFrame",
    "BoundedBuffer",
    "ChatRequest",
    "ChatResponse",
    "Control",
    "CostInfo",
    "Element",
    "EndOfStream",
    "EndOfTurn",
    "ErrorElement",
    "EventBus",
    "Graph",
    "ImageFrame",
    "Interrupt",
    "Message",
    "MessageElement",
    "Metrics",
    "OverflowPolicy",
    "PlaybackFinished",
    "PlaybackStarted",
    "ReasoningDelta",
    "ReplyStarted",
    "ReplyTranscript",
    "RxkitError",
    "Sentence",
    "SpeechStarted",
    "SpeechStopped",
    "Stage",
    "StageKind",
    "StreamChunk",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
    "ToolCallElement",
    "ToolDescriptor",
    "Transcript",
    "Turn",
    "Usage",
    "Utterance",
    "VadFrame",
    "arun",
    "as_observable",
    "as_stage",
    "astream",
    "attach",
    "default_bus",
    "is_control",
    "is_urgent",
    "run",
    "stage",
]
