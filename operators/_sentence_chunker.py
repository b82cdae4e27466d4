"""sentence_chunker: streamed model text in, one clean sentence at a time out (for TTS).

A sentence is emitted as soon as it is known to be complete: at ``. ! ?``
(or an ellipsis before a capital letter) followed by white space, at a CJK
sentence mark (the ideographic full stop, the fullwidth and halfwidth full
stops, the fullwidth ! and ?: Chinese and Japanese put no space after them),
or at a line break. With ``first_clause_words`` the first chunk of a reply
may end sooner, at a clause boundary (so speech starts sooner).
Abbreviations (Mr., Dr., e.g., i.e., etc., U.S.), initials,
decimal numbers (3.14) and list numbers ("1.") do not end a sentence.
Markdown is stripped from each sentence before it goes out.
"""

from __future__ import annotations

import re
from typing import Any

import reactivex
from reactivex import Observable, abc

from rxkit.elements import EndOfStream, EndOfTurn, Interrupt, Sentence, TextDelta
from rxkit.errors import ConfigError
from rxkit.graph.stage import Stage, StageKind

__all__ = ["sentence_chunker", "strip_markdown"]


# CJK sentence ends (ideographic full stop, fullwidth ! ? and full stop, halfwidth ideographic full stop)
_CJK_ENDS = "\u3002\uff01\uff1f\uff0e\uff61"
_TERMINATORS = ".!?…" + _CJK_ENDS
# Closing and opening marks around a sentence end: quotes (straight, curly, guillemets, CJK corner
# brackets), brackets (also fullwidth) and markdown emphasis/code markers.
_CLOSERS = "\"')]}*_`\u00bb\u201d\u2019\u300d\u300f\uff09\u3011\u300b\u3009\u3015\uff3d\uff5d"
_OPENERS = "\"'([{*_`\u00ab\u201c\u2018\u300c\u300e\uff08\u3010\u300a\u3008\u3014\uff3b\uff5b"
_ABBREVIATIONS = frozenset(
    {
        *("mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "al", "cf", "eg", "ie"),
        *("approx", "dept", "est", "fig", "inc", "ltd", "co", "corp", "gen", "gov", "lt", "col", "sgt", "capt"),
        *("mt", "ave", "blvd"),
    }
)
_DOTTED = re.compile(r"(?:[a-z]\.)+[a-z]")  # e.g  i.e  u.s  a.m  p.h.d (the final dot is the candidate)


def sentence_chunker(*, max_chars: int = 250, drop_code: bool = False, first_clause_words: int = 0) -> Stage[Any, Any]:
    """Turn a stream of :class:`TextDelta` into :class:`Sentence` elements, one per sentence.

    The first sentence goes out as soon as it is complete, long before the
    model finishes; the rest of the text goes out at :class:`EndOfTurn`,
    :class:`EndOfStream` or completion. An :class:`Interrupt` drops the
    partial sentence. Control elements and other elements pass through in
    order. A run of ``max_chars`` without a sentence end is cut at a comma
    (else a space), so speech can start. ``drop_code=True`` leaves fenced code
    blocks out (by default their lines are spoken, fences removed).

    ``first_clause_words=N`` (N > 0) lets the first chunk of each reply (after
    the start, an EndOfTurn, an EndOfStream or an Interrupt) end at the first
    clause boundary (a comma, semicolon or colon followed by white space, a
    dash between spaces, or before a conjunction that opens a clause: and,
    but, because, which, while, although, though, whereas, unless) that has
    at least N words before it, instead of at
    the end of the first sentence: text-to-speech can start on it while the
    model writes the rest. Later chunks are whole sentences. 0 (the default)
    cuts sentences only.

    >>> import reactivex
    >>> from rxkit.elements import TextDelta
    >>> out = reactivex.of(TextDelta("Hi **there**. Dr. Smith"), TextDelta(" paid $3.50.")).pipe(
    ...     sentence_chunker()).pipe(reactivex.operators.to_list()).run()
    >>> [s.text for s in out]
    ['Hi there.', 'Dr. Smith paid $3.50.']
    >>> out = reactivex.of(TextDelta("Well, I think that Paris, the capital, is lovely. Go, see it.")).pipe(
    ...     sentence_chunker(first_clause_words=4)).pipe(reactivex.operators.to_list()).run()
    >>> [s.text for s in out]
    ['Well, I think that Paris,', 'the capital, is lovely.', 'Go, see it.']
    """
    if max_chars < 20:
        raise ConfigError(f"max_chars must be at least 20, not {max_chars}")
    if first_clause_words < 0:
        raise ConfigError(f"first_clause_words must be zero (off) or more, not {first_clause_words}")

    def operator(source: Observable[Any]) -> Observable[Any]:
        def subscribe(observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None) -> Any:
            chunker = _Chunker(observer, max_chars, drop_code, first_clause_words)
            return source.subscribe(chunker.on_next, observer.on_error, chunker.on_completed, scheduler=scheduler)

        return reactivex.create(subscribe)

    return Stage("sentence_chunker", operator, StageKind.ACCUMULATE, "model text -> whole sentences for TTS")


class _Chunker:
    __slots__ = (
        *("_emit", "_observer", "_max", "_drop_code", "_pending", "_scan", "_line_start", "_in_code"),
        *("_clause_words", "_first"),
    )

    def __init__(self, observer: abc.ObserverBase[Any], max_chars: int, drop_code: bool, clause_words: int) -> None:
        self._observer = observer
        self._emit = observer.on_next
        self._max = max_chars
        self._drop_code = drop_code
        self._clause_words = clause_words
        self._reset()

    def _reset(self) -> None:
        self._pending = ""  # bounded: cut at max_chars when no sentence end comes
        self._scan = 0  # text before this index holds no sentence end
        self._line_start = True
        self._in_code = False
        self._first = self._clause_words  # words a first clause needs; 0 once the reply's first chunk is out

    def on_next(self, x: Any) -> None:
        if type(x) is TextDelta:  # the hot path: one concatenation and a scan of the new text
            self._pending += x.text
            self._split()
        elif isinstance(x, Interrupt):
            self._reset()
            self._emit(x)
        elif isinstance(x, (EndOfTurn, EndOfStream)):
            self._flush()
            self._reset()
            self._emit(x)
        elif isinstance(x, TextDelta) and not isinstance(x, Sentence):
            self._pending += x.text
            self._split()
        else:
            self._emit(x)

    def on_completed(self) -> None:
        self._flush()
        self._observer.on_completed()

    def _split(self) -> None:
        while True:
            cut = _find_end(self._pending, self._scan, self._line_start)
            if self._first and not self._in_code:  # the reply's first chunk: a clause will do
                clause = _find_clause(self._pending, self._first, cut if cut >= 0 else len(self._pending))
                if clause > 0:
                    self._out(self._pending[:clause], newline=False)
                    self._pending = self._pending[clause:].lstrip(" \t")
                    self._scan = 0
                    continue
            if cut < 0:
                self._scan = -cut - 1
                if len(self._pending) > self._max:
                    cut = _forced_cut(self._pending, self._max)
                    self._out(self._pending[:cut], newline=False)
                    self._pending = self._pending[cut:].lstrip(" \t")
                    self._scan = 0
                    continue
                return
            newline = self._pending[cut - 1 : cut] == "\n"
            self._out(self._pending[:cut], newline)
            self._pending = self._pending[cut:].lstrip(" \t")
            self._scan = 0

    def _flush(self) -> None:
        if self._pending:
            self._out(self._pending, newline=True)
        self._pending = ""
        self._scan = 0

    def _out(self, raw: str, newline: bool) -> None:
        line_start, self._line_start = self._line_start, newline
        stripped = raw.strip()
        if line_start and (stripped.startswith("```") or stripped.startswith("~~~")):
            self._in_code = not self._in_code
            return
        if self._in_code and self._drop_code:
            return
        text = strip_markdown(raw, line_start=line_start)
        if any(c.isalnum() for c in text):
            self._first = 0
            self._emit(Sentence(text))


def _find_end(text: str, start: int, line_start: bool) -> int:
    """Index just past the first sentence end at or after ``start``, or ``-(resume + 1)``
    when there is none yet (``resume``: where to scan from once more text comes)."""
    n = len(text)
    i = start
    while i < n:
        c = text[i]
        if c == "\n":
            return i + 1
        if c not in _TERMINATORS:
            i += 1
            continue
        j = i
        while j < n and text[j] in _TERMINATORS:
            j += 1
        run_end = j
        while j < n and text[j] in _CLOSERS:
            j += 1
        if j == n:
            return -(i + 1)  # the next character decides
        if not text[j].isspace():
            if text[run_end - 1] in _CJK_ENDS and not text[j].isdigit():  # CJK: no space follows
                return j
            i = j  # 3.14, example.com, e.g.x
            continue
        run = text[i:run_end]
        if run == "." and _not_an_end(text, i, line_start):
            i = j
            continue
        if run.startswith("...") or run.startswith("…"):
            k = j
            while k < n and text[k] in " \t":
                k += 1
            if k == n:
                return -(i + 1)
            if text[k].islower():  # "well... maybe": the sentence goes on
                i = j
                continue
        return j
    return -(n + 1)


def _not_an_end(text: str, dot: int, line_start: bool) -> bool:
    """The period at ``dot`` closes an abbreviation, an initial or a list number."""
    begin = dot
    while begin > 0 and not text[begin - 1].isspace():
        begin -= 1
    word = text[begin:dot].lstrip(_OPENERS)
    if not word:
        return False
    lower = word.lower()
    if lower in _ABBREVIATIONS or _DOTTED.fullmatch(lower):
        return True
    if len(word) == 1 and word.isupper():  # an initial: "J. R. R. Tolkien"
        return True
    # "1." opening a line is a list number, not a sentence of its own
    return word.isdigit() and ((begin == 0 and line_start) or text[:begin].rstrip(" \t").endswith("\n"))


# , ; : before a space, or a dash between spaces (the boundary is kept with the clause); or the space before a
# conjunction that opens a clause, where a speaker pauses ("... is incorrect | and needs ..."): the conjunction
# goes with the rest, and it must be a whole word (a space after it) before the cut is made.
_CLAUSE = re.compile(
    r"[,;:](?=\s)|\s[-\u2013\u2014]{1,2}(?=\s)|(?<=\w)(?=\s+(?:and|but|because|which|while|although|though|whereas"
    r"|unless)\s)"
)


def _find_clause(text: str, words: int, end: int) -> int:
    """Index just past the first clause boundary before ``end`` with at least ``words`` words before it, or 0."""
    for match in _CLAUSE.finditer(text, 0, end):
        if len(text[: match.start()].split()) >= words:
            return match.end()
    return 0


def _forced_cut(text: str, limit: int) -> int:
    head = text[:limit]
    for sep in (", ", "; ", ": ", " - ", " "):
        at = head.rfind(sep)
        if at > limit // 3:
            return at + len(sep)
    return limit


_LINE_RULES = [
    (re.compile(r"^\s{0,3}#{1,6}\s+"), ""),  # headings
    (re.compile(r"^\s*>\s?"), ""),  # block quotes
    (re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+"), ""),  # list bullets and numbers
    (re.compile(r"^\s*(?:[-*_]\s*){3,}$"), ""),  # horizontal rules
]
_INLINE_RULES = [
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # images -> alt text
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # links -> their text
    (re.compile(r"`+([^`]*)`+"), r"\1"),  # inline code
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),  # strong
    (re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])"), r"\1"),  # emphasis *x*
    (re.compile(r"(?<!\w)_(?=\S)(.+?)(?<=\S)_(?!\w)"), r"\1"),  # emphasis _x_ (not snake_case)
    (re.compile(r"~~(.+?)~~"), r"\1"),  # strike-through
    (re.compile(r"\*\*|__|~~|`|(?<=\w)\*|\*(?=\w)"), ""),  # markers left open across sentences
    (re.compile(r"\s+"), " "),
]


def strip_markdown(text: str, *, line_start: bool = True) -> str:
    """Plain speakable text from one sentence of markdown.

    >>> strip_markdown("## **Bold** and [a link](http://x.y) with `code`")
    'Bold and a link with code'
    """
    if line_start:
        for pattern, repl in _LINE_RULES:
            text = pattern.sub(repl, text, count=1)
    for pattern, repl in _INLINE_RULES:
        text = pattern.sub(repl, text)
    return text.strip()
