"""rxkit: a streaming LLM runtime built as a dataflow graph on reactive streams.

>>> import rxkit, reactivex.operators as ops
>>> rxkit.Graph.chain(ops.map(str.upper)).run(["hi"])
['HI']
"""

from .buffering import BoundedBuffer, OverflowPolicy
from .elements import (
    AudioFrame,
    Control,
    Element,
    EndOfStream,
    EndOfTurn,
    ErrorElement,
    Interrupt,
    MessageElement,
    TextDelta,
    ToolCallElement,
    is_control,
)
from .errors import RxkitError
from .events import EventBus, default_bus
from .graph import INPUT, Graph, as_observable
from .metrics import Metrics
from .stage import Stage, StageKind, as_stage, stage
from .turn import Turn
from .types import (
    ChatRequest,
    ChatResponse,
    CostInfo,
    Message,
    StreamChunk,
    ToolCall,
    ToolDescriptor,
    Usage,
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
    "Interrupt",
    "Message",
    "MessageElement",
    "Metrics",
    "OverflowPolicy",
    "RxkitError",
    "Stage",
    "StageKind",
    "StreamChunk",
    "TextDelta",
    "ToolCall",
    "ToolCallElement",
    "ToolDescriptor",
    "Turn",
    "Usage",
    "as_observable",
    "as_stage",
    "default_bus",
    "is_control",
    "stage",
]
