"""The ready graphs' options, grouped by what they tune, typed, and loadable from a config file.

::

    AudioDevices          where sound comes from and goes to: devices, rates, block size
    TurnDetection         the VAD and the turn detector: when a user turn starts and ends
    BargeInPolicy         what speaking over the reply does; headphones; the echo tail
    SpeechRecognition     which speech recogniser, and its model; how the reply is cut for speech
    ConversationSettings  the text-mode conversation: provider, prompt, store, session, tools, approval
    VoiceSettings         the four together, for the voice graph

Each group is a frozen pydantic model that refuses unknown fields. A bad
field is a :class:`~rxkit.errors.ConfigError` naming the field, never the
value given (a config file may hold a key under a misspelt name).

>>> settings = VoiceSettings(turn_detection=TurnDetection(stop_ms=500), barge_in=BargeInPolicy(headphones=True))
>>> settings.turn_detection.stop_ms, settings.barge_in.strategy
(500.0, 'immediate')
>>> settings.with_options(stop_ms=900, barge_in="ignore").turn_detection.stop_ms
900.0
>>> VoiceSettings.from_data({"turn_detection": {"stop_ms": -1}})
Traceback (most recent call last):
...
rxkit.errors.ConfigError: invalid VoiceSettings: turn_detection.stop_ms: input should be greater than 0

A file holds the same, a table per group (YAML, TOML or JSON)::

    # voice.toml
    [audio]
    input_device = "USB"
    [turn_detection]
    stop_ms = 500
    [barge_in]
    headphones = true
    [conversation]
    provider = { type = "openai", model = "gpt-4o-mini" }
    prompt = "You are terse."

    settings = VoiceSettings.from_file("voice.toml")
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    InstanceOf,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SkipValidation,
    ValidationError,
    field_validator,
    model_validator,
)

from rxkit.audio.vad import VAD_FRAME_MS, VAD_SAMPLE_RATES
from rxkit.config import read_config_file
from rxkit.errors import ConfigError, describe_validation
from rxkit.operators import BARGE_IN_STRATEGIES
from rxkit.prompts import PromptSpec
from rxkit.providers.registry import ProviderSpec
from rxkit.state.base import StateStore
from rxkit.tools import Tool, ToolRegistry
from rxkit.tools.approval import Approver
from rxkit.types import ToolDescriptor
from rxkit.validation import Validator

__all__ = [
    "AudioDevices",
    "BargeInPolicy",
    "ConversationSettings",
    "SpeechRecognition",
    "TurnDetection",
    "VoiceSettings",
]

_S = TypeVar("_S", bound="_Settings")

_Tools = ToolRegistry | Sequence[Tool | ToolDescriptor | Callable[..., Any]]


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    @classmethod
    def from_data(cls: type[_S], data: Any, *, what: str | None = None) -> _S:
        """Settings from plain data (a mapping, as a config file holds); a bad field is a ConfigError naming it."""
        what = what or cls.__name__
        if not isinstance(data, Mapping):
            raise ConfigError(f"{what} must be a mapping of field names to values, not {type(data).__name__}")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise ConfigError(f"invalid {what}: {describe_validation(exc, _known_fields(cls, exc))}") from None

    @classmethod
    def from_file(cls: type[_S], path: str | os.PathLike[str]) -> _S:
        """Settings from a YAML, TOML or JSON file (by its suffix): a table per field group."""
        return cls.from_data(read_config_file(path, cls.__name__), what=f"{cls.__name__} in {os.fspath(path)}")

    def replace(self: _S, **changes: Any) -> _S:
        """A copy with ``changes``, checked like a new one (pydantic's ``model_copy`` checks nothing)."""
        return type(self).from_data({**dict(self), **changes})


def _known_fields(model: type[BaseModel], exc: ValidationError) -> list[str]:
    """The fields of the group where a field is unknown (``audio`` for ``audio.input_devise``)."""
    for err in exc.errors(include_url=False, include_input=False):
        if err["type"] == "extra_forbidden":
            for part in err["loc"][:-1]:
                field = model.model_fields.get(str(part))
                inner = field.annotation if field is not None else None
                if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
                    break
                model = inner
            break
    return list(model.model_fields)


class AudioDevices(_Settings):
    """Where the sound comes from and goes to.

    ``input_device`` / ``output_device``: an index, a piece of the device's
    name, or None for the default (``rxkit devices`` lists them).
    ``input_rate``: the microphone's sample rate (one webrtcvad takes; a WAV
    file at another rate, or in stereo, is converted to it). ``output_rate``:
    the speaker's stream rate (None: the TTS engine's own, so it plays
    without conversion). ``block_ms``: the size of each microphone block and
    WAV frame.
    """

    input_device: int | str | None = None
    output_device: int | str | None = None
    input_rate: int = 16000
    output_rate: PositiveInt | None = None
    block_ms: int = 20

    @field_validator("input_rate")
    @classmethod
    def _vad_rate(cls, value: int) -> int:
        if value not in VAD_SAMPLE_RATES:
            raise ValueError(f"must be one webrtcvad takes: {', '.join(map(str, VAD_SAMPLE_RATES))} Hz")
        return value

    @field_validator("block_ms")
    @classmethod
    def _vad_frame(cls, value: int) -> int:
        if value not in VAD_FRAME_MS:
            raise ValueError(f"must be one webrtcvad takes: {', '.join(map(str, VAD_FRAME_MS))} ms")
        return value


# The default pause that starts a preemptive reply. B5 live (tests/bench/README.md), same run: 515 ms p50 at
# 100 ms against 655 ms at 200 ms (the end-of-turn model's pause), no question cut, the same transcripts.
_PREEMPTIVE_MS = 100.0


class TurnDetection(_Settings):
    """When a user turn starts and ends (:func:`~rxkit.operators.vad`, :func:`~rxkit.operators.turn_detector`).

    ``vad``: ``"silero"`` (default: a neural VAD whose model ships in the
    voice extra; it does not take coughs, clicks or noise bursts for speech)
    or ``"webrtc"`` (webrtcvad: a hundred times cheaper, far more false
    alarms). ``vad_threshold``: Silero's speech probability, 0.5
    by default. ``vad_aggressiveness``: webrtcvad's 0-3, 3 filters out the
    most non-speech; given without ``vad``, it picks webrtcvad (the engine
    it tunes), so older settings keep their meaning. A turn
    starts after ``start_ms`` of speech and ends after ``stop_ms`` of
    silence or at ``max_turn_s``; one with less than ``min_speech_ms`` of
    speech is dropped; ``pre_roll_ms`` of audio before the speech goes with it.

    ``end_of_turn``: ``"smart-turn"`` (an end-of-turn model,
    :class:`~rxkit.audio.turn_model.SmartTurn`, from the ``turn`` extra:
    after ``vad_stop_ms`` of silence it judges whether the turn sounds
    complete, from ``end_of_turn_threshold`` up; a complete turn ends there,
    one heard as unfinished after ``incomplete_stop_ms`` of silence, and
    until its verdict is in ``stop_ms`` still ends a turn) or ``"silence"``
    (``stop_ms`` of silence alone). None (default): smart-turn when the
    ``turn`` extra is installed, else silence, and the graph says how to get it.

    ``preemptive``: start the reply at the first pause that may end the
    turn (``vad_stop_ms`` of silence), before the turn is confirmed, and
    hold it (nothing played, no tool run, nothing saved) until it is; if
    the user speaks on, it is dropped unheard (LiveKit's preemptive generation). On by default
    (B5 live, idle machine, with the other defaults: end of speech to first audio 585 ms p50 with it,
    1045 ms without).
    ``preemptive_ms``: the pause that starts it (default: 100 ms, or
    ``vad_stop_ms`` if that is shorter; at most ``vad_stop_ms``): the reply
    starts while the end-of-turn model still waits for its pause, and a
    pause the user speaks on after drops it (at most 3 per turn). B5 live,
    same run: 515 ms p50 at 100 ms, 655 ms at 200 ms.

    ``prefill_partials``: while the user speaks, have the model evaluate the
    prompt with the partial transcript so far, so that when the turn ends
    only its last words are new to it, and evaluate the first turn's
    opening (system prompt, stored history) when the graph starts
    (providers that can: the embedded local model,
    :meth:`~rxkit.providers.local.LocalProvider.anticipate` and
    :meth:`~rxkit.providers.local.LocalProvider.expect`; others ignore it;
    not with tools). On by default.
    """

    vad: Literal["silero", "webrtc"] = "silero"
    vad_threshold: float = Field(default=0.5, gt=0.15, lt=1)
    vad_aggressiveness: Literal[0, 1, 2, 3] = 2

    @model_validator(mode="before")
    @classmethod
    def _aggressiveness_means_webrtc(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "vad_aggressiveness" in data and "vad" not in data:
            return {**data, "vad": "webrtc"}
        return data

    start_ms: PositiveFloat = 200
    stop_ms: PositiveFloat = 700
    min_speech_ms: NonNegativeFloat = 300
    pre_roll_ms: NonNegativeFloat = 300
    max_turn_s: PositiveFloat = 30.0
    end_of_turn: Literal["smart-turn", "silence"] | None = None
    end_of_turn_threshold: float = Field(default=0.5, gt=0, lt=1)
    vad_stop_ms: PositiveFloat = 200
    # 1500 ms for a turn heard as unfinished: the model judges complete sentences complete (0.89-0.99 on real
    # speech) and ones cut mid-clause not (0.01-0.20), so this wait is for turns that sound unfinished, where
    # waiting is the point (Pipecat waits 3 s); but read speech whose voice stays up at a full stop is heard
    # as unfinished too (2 of 5 LibriVox sentences here), so it stays near twice the 700 ms silence.
    incomplete_stop_ms: PositiveFloat = 1500
    preemptive: bool = True
    preemptive_ms: PositiveFloat | None = None
    prefill_partials: bool = True

    @model_validator(mode="after")
    def _preemptive_within_the_verdicts_pause(self) -> TurnDetection:
        if self.preemptive_ms is not None and self.preemptive_ms > self.vad_stop_ms:
            raise ValueError(f"preemptive_ms ({self.preemptive_ms}) must be at most vad_stop_ms ({self.vad_stop_ms})")
        return self

    def preemptive_pause_ms(self) -> float:
        """The pause that starts a preemptive reply: ``preemptive_ms``, or 100 ms (``vad_stop_ms`` if shorter)."""
        return self.preemptive_ms if self.preemptive_ms is not None else min(_PREEMPTIVE_MS, self.vad_stop_ms)

    def end_of_turn_model(self) -> Any:
        """The end-of-turn model these settings name (loaded: build it before the graph), or None.

        ``end_of_turn`` None takes smart-turn only where the ``turn`` extra is installed; ``"smart-turn"``
        without it is a :class:`~rxkit.errors.MissingExtraError` saying how to get it.
        """
        if self.end_of_turn == "silence":
            return None
        from rxkit.audio.turn_model import SmartTurn, smart_turn_available

        if self.end_of_turn is None and not smart_turn_available():
            return None
        return SmartTurn(threshold=self.end_of_turn_threshold)


class BargeInPolicy(_Settings):
    """What the user speaking over the reply does (see :mod:`rxkit.graphs.voice`).

    ``strategy``: ``"immediate"`` stops the reply at once, ``"after_sentence"``
    lets the sentence playing finish, ``"ignore"`` answers afterwards.
    ``headphones``: listen while the reply plays (else the mic is deaf then,
    and ``echo_tail_ms`` after it, as a desktop has no echo cancellation).
    ``confirm_ms``: how much speech over the reply makes a barge-in; shorter
    speech (a cough, a click) only pauses the reply, which resumes after
    ``resume_ms`` of quiet (0: any speech cuts at once; see
    :func:`~rxkit.operators.barge_in`).
    """

    strategy: str = "immediate"
    confirm_ms: NonNegativeFloat = 500
    resume_ms: PositiveFloat = 500
    headphones: bool = False
    echo_tail_ms: NonNegativeFloat = 300

    @field_validator("strategy")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in BARGE_IN_STRATEGIES:
            raise ValueError(f"must be one of {', '.join(BARGE_IN_STRATEGIES)}")
        return value


class SpeechRecognition(_Settings):
    """Which speech recogniser the voice graph builds when none is given (``stt=`` wins over this).

    ``stt_engine``: ``"pocketsphinx"`` (default: offline, its English model inside
    the package, no download), ``"whisper"`` (faster-whisper: far fewer
    errors; ``stt_model`` a name such as ``"base.en"``, fetched once into
    your cache, or a model directory; default ``"tiny.en"``), ``"vosk"``
    (``stt_model``: your unpacked model directory, required), or a cloud
    service (:mod:`rxkit.speech`): ``"deepgram"`` (streaming, ``stt_model``
    default ``"nova-3"``, key in ``DEEPGRAM_API_KEY``) or ``"openai"``
    (``stt_model`` default ``"gpt-4o-mini-transcribe"``, key in ``OPENAI_API_KEY``).

    ``first_clause_words``: the reply's first chunk goes to speech synthesis
    at its first clause boundary (comma, semicolon, colon, dash) with at
    least this many words before it, not at the end of its first sentence,
    so the assistant starts talking sooner; 0 waits for the whole sentence
    (:func:`~rxkit.operators.sentence_chunker`).
    """

    stt_engine: Literal["pocketsphinx", "whisper", "vosk", "deepgram", "openai"] = "pocketsphinx"
    stt_model: str | None = None
    first_clause_words: NonNegativeInt = 4

    def build(self) -> Any:
        """The recogniser these settings name (loads its model: build it before the conversation)."""
        from rxkit.audio.stt import PocketSphinxSTT, VoskSTT, WhisperSTT

        if self.stt_engine == "whisper":
            return WhisperSTT(self.stt_model or "tiny.en")
        if self.stt_engine == "vosk":
            if self.stt_model is None:
                raise ConfigError("speech.stt_engine 'vosk' needs speech.stt_model: an unpacked vosk model directory")
            return VoskSTT(self.stt_model)
        if self.stt_engine in ("deepgram", "openai"):
            from rxkit.speech import DeepgramSTT, OpenAISTT

            cloud = DeepgramSTT if self.stt_engine == "deepgram" else OpenAISTT
            return cloud(self.stt_model) if self.stt_model else cloud()
        if self.stt_model is not None:
            raise ConfigError(
                "speech.stt_model goes with stt_engine 'whisper', 'vosk', 'deepgram' or 'openai'; "
                "pocketsphinx uses its own model"
            )
        return PocketSphinxSTT()


class ConversationSettings(_Settings):
    """The text-mode conversation (:func:`~rxkit.graphs.text_graph`), which the voice graph also runs.

    ``provider``: a spec (``"local"``, ``{"type": "openai", "model": ...}``)
    for what builds and owns its provider (:class:`~rxkit.graphs.VoiceAssistant`,
    :class:`~rxkit.graphs.Conversation`); the graph builders take a provider
    object and do not read it. ``store`` (default: a new in-memory store) and
    ``session`` say where the history is kept; ``prompt`` and ``variables``
    make the system prompt; ``tools``, ``max_tool_rounds``, ``tool_timeout``,
    ``approver`` and ``two_phase`` configure the tool loop
    (:func:`~rxkit.operators.tool_loop`). Objects (a store, tools, an
    approver, validators) are given in code; a file holds the rest.
    """

    provider: ProviderSpec | str | None = None
    store: InstanceOf[StateStore] | None = None
    session: str = Field(default="default", min_length=1)
    prompt: PromptSpec | str | None = None
    variables: dict[str, Any] | None = None
    input_validators: SkipValidation[Sequence[Validator]] = ()
    output_validators: SkipValidation[Sequence[Validator]] = ()
    max_history_tokens: int | None = None
    tools: SkipValidation[_Tools | None] = None
    max_tool_rounds: int = 5
    tool_timeout: float = 30.0
    approver: SkipValidation[Approver | None] = None
    two_phase: bool = False

    def with_options(self, **options: Any) -> ConversationSettings:
        """These settings with today's keyword arguments of :func:`~rxkit.graphs.text_graph` applied.

        An unknown keyword is a TypeError, as for any function; a bad value a ConfigError naming it.
        """
        for name in options:
            if name not in type(self).model_fields:
                raise TypeError(f"unexpected keyword argument {name!r}")
        return self.replace(**options) if options else self


_GROUPS: dict[str, type[_Settings]] = {
    "audio": AudioDevices,
    "turn_detection": TurnDetection,
    "barge_in": BargeInPolicy,
    "speech": SpeechRecognition,
    "conversation": ConversationSettings,
}
# Each field of a group is also a flat keyword of voice_graph (``barge_in="ignore"`` sets the strategy).
_FLAT = {field: group for group, model in _GROUPS.items() for field in model.model_fields}
assert len(_FLAT) == sum(len(m.model_fields) for m in _GROUPS.values()), "flat keyword names must be unique"


class VoiceSettings(_Settings):
    """Everything the voice graph is tuned by: the groups together.

    :meth:`from_file` reads them from a config file, a table per group;
    :meth:`with_options` applies :func:`~rxkit.graphs.voice_graph`'s flat
    keyword arguments (``stop_ms=500``, ``headphones=True``, ``store=...``).
    """

    audio: AudioDevices = AudioDevices()
    turn_detection: TurnDetection = TurnDetection()
    barge_in: BargeInPolicy = BargeInPolicy()
    speech: SpeechRecognition = SpeechRecognition()
    conversation: ConversationSettings = ConversationSettings()

    def with_options(self, **options: Any) -> VoiceSettings:
        """These settings with flat keywords applied, each to its group; ``barge_in`` may be a strategy name.

        A keyword that names no field is a TypeError, as for any function; a bad value a ConfigError naming it.
        """
        changes: dict[str, dict[str, Any]] = {}
        for name, value in options.items():
            if name == "barge_in" and isinstance(value, str):
                name = "strategy"
            group = _FLAT.get(name)
            if group is None:
                raise TypeError(f"unexpected keyword argument {name!r}")
            changes.setdefault(group, {})[name] = value
        if "vad_aggressiveness" in options and "vad" not in options:
            changes["turn_detection"]["vad"] = "webrtc"  # as TurnDetection(vad_aggressiveness=...) reads it
        if not changes:
            return self
        mine = dict(self)
        groups = {group: {**dict(mine[group]), **fields} for group, fields in changes.items()}
        return self.replace(**groups)
