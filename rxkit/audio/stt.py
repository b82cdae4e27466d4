"""Speech-to-text: one protocol, three engines (pocketsphinx, the default; vosk; Whisper through faster-whisper).

An engine owns a model and one worker thread: every recognition call runs
there, never on the event loop. Audio of any rate or channel count is
converted to the engine's rate (16 kHz mono) on that thread.

Streaming, one utterance at a time::

    stt = PocketSphinxSTT()              # bundled English model, no download
    rec = stt.start()                    # begin an utterance
    partial = await rec.feed(pcm, 16000) # a partial Transcript when the text changed, else None
    final = await rec.finish()           # Transcript(text=..., final=True)
    stt.close()                          # stops the worker thread

Or in one call: ``text = stt.transcribe(pcm, 16000)`` (blocking) or
``await stt.atranscribe(pcm, 16000)``. Users with their own vosk model use
``VoskSTT("/path/to/vosk-model-en-us-0.22")``, and ``WhisperSTT("small.en")``
(fetched once into the user's cache by faster-whisper) or
``WhisperSTT("/path/to/a/ctranslate2/model")`` hear far better (word error
rate 0.08-0.10 on real speech for tiny.en, 0.3-0.4 for pocketsphinx); a missing or invalid directory
raises :class:`~rxkit.errors.ModelNotFoundError` right there, before any
audio is opened. Construction loads the model (about 0.4 s for pocketsphinx,
2 s for a small vosk model): build engines before the conversation starts.
"""

from __future__ import annotations

import asyncio
import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Protocol

from rxkit.audio._worker import Worker
from rxkit.elements import Transcript
from rxkit.errors import AudioError, ConfigError, ModelNotFoundError, RxkitError
from rxkit.extras import require_extra

__all__ = ["STT", "WHISPER_HINT", "PocketSphinxSTT", "Recognition", "VoskSTT", "WhisperSTT"]


class _Utterance(Protocol):
    """An engine's decoding state for one utterance; lives on the worker thread."""

    def accept(self, pcm: bytes, partial: bool) -> str: ...

    def finish(self) -> str: ...

    def abort(self) -> None: ...


class STT(ABC):
    """Base of speech recognisers: model loading and every decode run on one worker thread."""

    name = "stt"
    sample_rate = 16_000

    def __init__(self) -> None:
        self._worker = Worker(f"rxkit-stt-{self.name}")

    @abstractmethod
    def _open(self) -> _Utterance:
        """Begin an utterance (worker thread)."""

    def _load(self, fn: Any, *args: Any) -> Any:
        """Run model loading on the worker, closing it again if loading fails."""
        try:
            return self._worker.call(fn, *args)
        except BaseException:
            self._worker.close()
            raise

    def start(self, *, partials: bool = True) -> Recognition:
        """Begin recognising one utterance; ``partials=False`` skips partial hypotheses (cheaper)."""
        return Recognition(self, partials)

    def transcribe(self, pcm: Any, sample_rate: int = 16_000, channels: int = 1) -> str:
        """Recognise a whole utterance of 16-bit PCM; blocks until done (for scripts)."""
        try:
            return self._worker.call(self._batch, pcm, sample_rate, channels)
        except RxkitError:
            raise
        except Exception as exc:
            raise _failed(self, exc) from exc

    async def atranscribe(self, pcm: Any, sample_rate: int = 16_000, channels: int = 1) -> str:
        """Recognise a whole utterance of 16-bit PCM without blocking the event loop."""
        try:
            return await self._worker.run(self._batch, pcm, sample_rate, channels)
        except RxkitError:
            raise
        except Exception as exc:
            raise _failed(self, exc) from exc

    def _batch(self, pcm: Any, sample_rate: int, channels: int) -> str:
        from rxkit.audio.convert import resample, to_mono  # numpy: imported on first use, on the worker

        audio = resample(to_mono(pcm, channels), sample_rate, self.sample_rate).tobytes()
        utt = self._open()
        try:
            utt.accept(audio, False)
        except BaseException:
            utt.abort()
            raise
        return utt.finish()

    def close(self) -> None:
        """Stop the worker thread (queued work finishes first). Idempotent."""
        self._worker.close()

    def __enter__(self) -> STT:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sample_rate={self.sample_rate})"


class Recognition:
    """One utterance being recognised: :meth:`feed` audio as it comes, then :meth:`finish`."""

    def __init__(self, stt: STT, partials: bool = True) -> None:
        self._stt = stt
        self._partials = partials
        self._utt: _Utterance | None = None
        self._resampler: Any = None  # a convert.Resampler, made on the worker
        self._last = ""
        self._ended = False

    async def feed(self, pcm: Any, sample_rate: int = 16_000, channels: int = 1) -> Transcript | None:
        """Add audio; returns a partial :class:`Transcript` when the hypothesis changed, else None."""
        return await self._run(self._feed, pcm, sample_rate, channels)

    async def finish(self) -> Transcript:
        """End the utterance and return the final :class:`Transcript`."""
        try:
            result: Transcript = await self._run(self._finish)
        except asyncio.CancelledError:
            # Cancelled while queued behind other work, the finish never runs: free the utterance, or an
            # engine that decodes one at a time (pocketsphinx) stays busy for good.
            self.close()
            raise
        return result

    def close(self) -> None:
        """Abandon the utterance (no result); safe to call at any time."""
        if not self._ended:
            self._ended = True
            try:
                self._stt._worker.submit(self._abort)
            except RxkitError:
                pass  # the engine is closed: nothing left to free

    async def _run(self, fn: Any, *args: Any) -> Any:
        try:
            return await self._stt._worker.run(fn, *args)
        except RxkitError:
            raise
        except Exception as exc:
            raise _failed(self._stt, exc) from exc

    # -- worker thread ----------------------------------------------------
    def _feed(self, pcm: Any, sample_rate: int, channels: int) -> Transcript | None:
        if self._ended:
            raise AudioError("this utterance has already finished; call stt.start() for the next one")
        from rxkit.audio.convert import Resampler, as_bytes, to_mono

        mono = to_mono(pcm, channels) if channels > 1 else pcm
        if sample_rate == self._stt.sample_rate:
            audio = as_bytes(mono)
        else:
            if self._resampler is None or self._resampler.from_rate != sample_rate:
                self._resampler = Resampler(sample_rate, self._stt.sample_rate)
            audio = self._resampler.process(mono)
        if self._utt is None:
            self._utt = self._stt._open()
        text = self._utt.accept(audio, self._partials)
        if not self._partials or text == self._last:
            return None
        self._last = text
        return Transcript(text, final=False)

    def _finish(self) -> Transcript:
        if self._ended:
            raise AudioError("this utterance has already finished")
        self._ended = True
        utt = self._utt if self._utt is not None else self._stt._open()
        self._utt = None
        return Transcript(utt.finish(), final=True)

    def _abort(self) -> None:
        if self._utt is not None:
            self._utt.abort()
            self._utt = None


def _failed(stt: STT, exc: Exception) -> AudioError:
    return AudioError(f"{stt.name} speech recognition failed: {type(exc).__name__}: {exc}")


# -- pocketsphinx -----------------------------------------------------------------


class PocketSphinxSTT(STT):
    """English speech recognition with pocketsphinx 5's bundled model (no download).

    Extra keyword arguments go to ``pocketsphinx.Decoder`` (``hmm``, ``lm``,
    ``dict``, ``kws``...) for a model of your own. One utterance at a time
    per engine: build a second engine for a second parallel stream.

    >>> with PocketSphinxSTT() as stt:  # doctest: +SKIP
    ...     stt.transcribe(open("goforward.raw", "rb").read(), 16000)
    'go forward ten meters'
    """

    name = "pocketsphinx"
    _PATH_KEYS = ("hmm", "lm", "dict", "fdict", "jsgf", "fsg", "kws", "mllr", "lmctl")

    def __init__(self, **config: Any) -> None:
        for key in self._PATH_KEYS:
            value = config.get(key)
            if isinstance(value, (str, os.PathLike)) and not os.path.exists(value):
                raise ModelNotFoundError(f"pocketsphinx {key} {os.fspath(value)!r} does not exist")
        super().__init__()
        self._busy = False
        self._decoder = self._load(_load_pocketsphinx, config)
        self.sample_rate = int(self._decoder.config["samprate"])

    def _open(self) -> _Utterance:
        if self._busy:
            raise AudioError("PocketSphinxSTT decodes one utterance at a time: finish the open one first")
        self._decoder.start_utt()
        self._busy = True
        return _PocketSphinxUtterance(self)


_PS_BLOCK = 1_600  # 50 ms at 16 kHz


class _PocketSphinxUtterance:
    __slots__ = ("_engine",)

    def __init__(self, engine: PocketSphinxSTT) -> None:
        self._engine = engine

    def accept(self, pcm: bytes, partial: bool) -> str:
        decoder = self._engine._decoder
        # pocketsphinx's binding holds the GIL while it decodes: small blocks let the event
        # loop (and PortAudio's callbacks) run between them. Live mode also updates its
        # cepstral mean per call, so small blocks are as accurate as full_utt on a whole
        # utterance (librivox WER 0.31 vs 0.28; one big live-mode block: worse).
        for i in range(0, len(pcm), _PS_BLOCK):
            decoder.process_raw(pcm[i : i + _PS_BLOCK], False, False)
        if not partial:
            return ""
        hyp = decoder.hyp()
        return hyp.hypstr if hyp is not None else ""

    def finish(self) -> str:
        decoder = self._engine._decoder
        try:
            decoder.end_utt()
            hyp = decoder.hyp()
            return hyp.hypstr if hyp is not None else ""
        finally:
            self._engine._busy = False

    def abort(self) -> None:
        try:
            self._engine._decoder.end_utt()
        finally:
            self._engine._busy = False


def _load_pocketsphinx(config: dict[str, Any]) -> Any:
    Decoder = require_extra("pocketsphinx", "voice", "PocketSphinxSTT").Decoder
    config.setdefault("loglevel", "FATAL")
    # No second (flat-lexicon) pass at the end of each utterance: it ran over the whole turn after the user
    # stopped, 0.4 s of CPU per LibriVox sentence vs 0.05 s without, and its words were no better here
    # (pooled word error rate on the five sentences, warm decoder: 0.27 without it, 0.31 with it).
    config.setdefault("fwdflat", False)
    # Nor the lattice search (bestpath) in end_utt: the words of the first pass, which the partials already
    # showed. Measured on 7 real recordings x 3 passes (tests/bench/bench_stt_finish.py): the final's CPU
    # 78 -> 50 ms p50, word error rate 0.233 -> 0.238 pooled (first pass 0.250 -> 0.237), i.e. one word in 240.
    config.setdefault("bestpath", False)
    try:
        return Decoder(**config)
    except KeyError as exc:
        raise ConfigError(f"unknown pocketsphinx option: {exc}") from None
    except RuntimeError as exc:
        raise ModelNotFoundError(f"pocketsphinx could not load its model with {config}: {exc}") from None


# -- vosk -------------------------------------------------------------------------


class VoskSTT(STT):
    """Speech recognition with a vosk model directory that you downloaded and unpacked.

    Partial results arrive while audio is fed; :meth:`Recognition.finish`
    gives the final text. Vosk is never asked to download a model by name.

    >>> stt = VoskSTT("/models/vosk-model-small-en-us-0.15")  # doctest: +SKIP
    """

    name = "vosk"

    def __init__(self, model_dir: str | os.PathLike[str], *, sample_rate: int = 16_000) -> None:
        path = Path(model_dir).expanduser()
        if not path.is_dir():
            raise ModelNotFoundError(f"vosk model directory {str(path)!r} does not exist", path=str(path))
        if not ((path / "am" / "final.mdl").is_file() or (path / "final.mdl").is_file()):
            raise ModelNotFoundError(
                f"{str(path)!r} is not a vosk model directory (no am/final.mdl): unpack a model from "
                "the vosk models page and pass its top directory",
                path=str(path),
            )
        super().__init__()
        self.model_dir = path
        self.sample_rate = sample_rate
        self._model = self._load(_load_vosk, path)

    def _open(self) -> _Utterance:
        from vosk import KaldiRecognizer

        return _VoskUtterance(KaldiRecognizer(self._model, float(self.sample_rate)))


class _VoskUtterance:
    __slots__ = ("_rec", "_done")

    def __init__(self, rec: Any) -> None:
        self._rec = rec
        self._done: list[str] = []  # text of segments vosk already closed at an endpoint

    def accept(self, pcm: bytes, partial: bool) -> str:
        if pcm and self._rec.AcceptWaveform(pcm):
            text = json.loads(self._rec.Result()).get("text", "")
            if text:
                self._done.append(text)
            return " ".join(self._done) if partial else ""
        if not partial:
            return ""
        now = json.loads(self._rec.PartialResult()).get("partial", "")
        return " ".join([*self._done, now]).strip()

    def finish(self) -> str:
        text = json.loads(self._rec.FinalResult()).get("text", "")
        return " ".join([*self._done, text]).strip()

    def abort(self) -> None:
        self._rec = None


def _load_vosk(path: Path) -> Any:
    vosk = require_extra("vosk", "voice", "VoskSTT")
    vosk.SetLogLevel(-1)  # kaldi logs every load step to stderr otherwise
    try:
        return vosk.Model(model_path=str(path))
    except Exception as exc:  # noqa: BLE001 - vosk raises a bare Exception on a bad model
        raise ModelNotFoundError(f"vosk could not load the model in {str(path)!r}: {exc}", path=str(path)) from None


# -- Whisper (faster-whisper) -----------------------------------------------------------

WHISPER_HINT = (
    "for better speech recognition: pip install 'rxkit[whisper]' and use --stt whisper "
    "(--whisper-model tiny.en, base.en or small.en is fetched once into your cache; or a model directory)"
)
"""How to get the better recogniser: what ``rxkit voice`` tells users of the default."""


class WhisperSTT(STT):
    """Speech recognition with OpenAI's Whisper models through faster-whisper (CTranslate2), on the CPU.

    ``model``: a model name (``"tiny.en"``, ``"base.en"``, ``"small.en"``,
    ``"distil-large-v3"``...), which faster-whisper fetches once into the
    user's cache (``download_root`` to choose where), or the directory of a
    CTranslate2 Whisper model (offline). ``local_only=True`` never fetches.
    Whisper hears a whole utterance at once: :meth:`Recognition.feed`
    gathers audio (no partials) and :meth:`Recognition.finish` decodes it on
    the worker thread. Text comes with Whisper's casing and punctuation.

    >>> stt = WhisperSTT("base.en")                      # doctest: +SKIP
    >>> stt.transcribe(pcm, 16000)                       # doctest: +SKIP
    'He was not an ill-disposed young man.'
    """

    name = "whisper"

    def __init__(
        self,
        model: str | os.PathLike[str] = "tiny.en",
        *,
        language: str | None = None,
        compute_type: str = "int8",
        cpu_threads: int = 0,
        beam_size: int = 1,
        download_root: str | os.PathLike[str] | None = None,
        local_only: bool = False,
    ) -> None:
        path = Path(model).expanduser()
        by_path = isinstance(model, os.PathLike) or os.sep in str(model) or path.exists()
        if by_path and not (path / "model.bin").is_file():
            raise ModelNotFoundError(
                f"{str(path)!r} is not a CTranslate2 Whisper model directory (no model.bin)", path=str(path)
            )
        super().__init__()
        self.model = str(path) if by_path else str(model)
        self.language = language if language is not None else ("en" if self.model.endswith(".en") else None)
        self.beam_size = beam_size
        options = {"compute_type": compute_type, "cpu_threads": cpu_threads, "local_files_only": local_only}
        if download_root is not None:
            options["download_root"] = os.fspath(download_root)
        self._model = self._load(_load_whisper, self.model, options)

    def _open(self) -> _Utterance:
        return _WhisperUtterance(self)

    def _decode(self, pcm: bytes) -> str:
        import numpy as np

        audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        if not len(audio):
            return ""
        segments, _ = self._model.transcribe(
            audio, language=self.language, beam_size=self.beam_size, vad_filter=False, condition_on_previous_text=False
        )
        return " ".join(seg.text.strip() for seg in segments).strip()

    def __repr__(self) -> str:
        return f"WhisperSTT({self.model!r})"


class _WhisperUtterance:
    __slots__ = ("_engine", "_pcm")

    _MAX_BYTES = 16_000 * 2 * 120  # two minutes: a turn is at most max_turn_s (30 s by default)

    def __init__(self, engine: WhisperSTT) -> None:
        self._engine = engine
        self._pcm = bytearray()

    def accept(self, pcm: bytes, partial: bool) -> str:
        if len(self._pcm) + len(pcm) > self._MAX_BYTES:
            raise AudioError("WhisperSTT holds at most 120 s of one utterance; end the turn sooner")
        self._pcm += pcm
        return ""

    def finish(self) -> str:
        pcm, self._pcm = bytes(self._pcm), bytearray()
        return self._engine._decode(pcm)

    def abort(self) -> None:
        self._pcm = bytearray()


def _load_whisper(model: str, options: dict[str, Any]) -> Any:
    WhisperModel = require_extra("faster_whisper", "whisper", "WhisperSTT").WhisperModel
    try:
        return WhisperModel(model, device="cpu", **options)
    except ValueError as exc:  # an unknown name
        raise ModelNotFoundError(f"no Whisper model {model!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a failed fetch (offline) or a broken model: say which and how
        raise ModelNotFoundError(
            f"could not load the Whisper model {model!r} ({type(exc).__name__}); a name is fetched once from "
            "Hugging Face into your cache (needs the network that first time), or pass a model directory"
        ) from None
