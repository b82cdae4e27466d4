"""The incremental, schema-aligned parser behind typed functions and ``parse_structured``.

It reads what a model writes, chunk by chunk, keeping its state between
chunks: each character is looked at once (string bodies are skipped with
one regex search), so parsing a whole answer costs O(length), never
O(length²) as re-parsing the accumulated text at every token does.

It is lenient the way model output needs: prose and markdown fences around
the value, trailing or missing commas, ``//`` and ``/* */`` comments,
unquoted keys and values, single quotes, and output cut short (``finish``
closes whatever is open). Values are aligned to the target type as they
complete (see :mod:`rxkit.structured._align`).
"""

from __future__ import annotations

import functools
import re
from typing import Any, Final, final

from pydantic import TypeAdapter, ValidationError

from rxkit.structured._align import align, align_answer, bare_value
from rxkit.structured._partial import ANY, HIDDEN, MISSING, Node, display
from rxkit.structured._shape import Shape, shape_of

__all__ = ["StreamingParser"]

# Modes. Final: mypyc compiles each use to the constant (a module global would be a dict lookup each time).
_PRE: Final = 0
_VAL: Final = 1
_KEY: Final = 2
_COLON: Final = 3
_SEP: Final = 4
_STR: Final = 5
_ESC: Final = 6
_UNI: Final = 7
_BARE: Final = 8
_SLASH: Final = 9
_LINE: Final = 10
_BLOCK: Final = 11
_POST: Final = 12
_RAW: Final = 13
_SQ: Final = 14
_SCALARS: Final = frozenset({"str", "int", "float", "bool", "enum", "literal", "none"})
_START: Final = re.compile(r"[{\[]")
_STOP: Final = {'"': re.compile(r'["\\]'), "'": re.compile(r"['\\]")}
_ESCAPES: Final = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}
_WS: Final = frozenset(" \t\r\n")
_BARE_END: Final = re.compile(r"[,}\]\n\r/]")
# After a single quote (and any spaces), one of these says the quote closed the string; anything else (a letter,
# a dot) makes it an apostrophe inside it: 'it's', 'the users' data'. Another quote after spaces is the next string.
_SQ_CLOSE: Final = frozenset(",}]:/")
# The first and last high surrogates, built with chr(): mypyc cannot compile a surrogate in a string literal.
_HIGH_FIRST: Final = chr(0xD800)
_HIGH_LAST: Final = chr(0xDBFF)


_SHARED: Final = 256  # targets whose shape and validator are kept


@functools.lru_cache(maxsize=_SHARED)
def _shared(target: Any, spelled: str) -> tuple[Shape, TypeAdapter[Any]]:
    """The shape and the validator of a target type, built once for all parsers of it (most of a new parser's
    cost: a typed function builds one per call). Bounded: a type defined anew at each call churns, never grows it.
    Keyed by the type and its spelling: ``Union[int, float] == Union[float, int]``, but the order of a union's
    arms matters to alignment and validation. A validator that waits for a forward reference is not kept (a
    TypeError, as for an unhashable target: its parser builds its own), so that it is rebuilt once defined."""
    shape, adapter = shape_of(target), TypeAdapter(target)
    if not adapter.pydantic_complete:
        raise TypeError(f"{spelled} waits for a forward reference")
    return shape, adapter


@final
class StreamingParser:
    """Parse a model's streamed answer into ``target``, partial values first.

    ``feed(chunk)`` returns True when the partial value changed; ``partial()``
    is the value so far (a pydantic model built without validation, fields not
    seen yet are their default or None); ``finish()`` closes what is open and
    returns the validated value, or raises :class:`pydantic.ValidationError`.
    ``shape`` and ``adapter`` are built once per target type and shared by its
    parsers: read them, never change them.

    >>> from pydantic import BaseModel
    >>> class City(BaseModel):
    ...     name: str
    ...     population: int
    >>> p = StreamingParser(City)
    >>> p.feed('Sure! ```json\\n{name: "Par'), p.partial()
    (True, City(name='Par', population=None))
    >>> p.feed('is", "population": "2,100,000",}\\n```'), p.finish()
    (True, City(name='Paris', population=2100000))
    """

    # Slots, as mypyc's native class has them: no __dict__, no weak references, in both builds. (Not Generic:
    # mypyc gives a native class with a Generic base a weak reference slot it never clears, and a weak reference
    # to a parser, as pydantic takes to each local of a function that defines a model, then corrupts memory.
    # The type parameter typed nothing: partial() and finish() return Any.)
    __slots__ = (
        "target", "shape", "adapter", "version", "steps", "text_parts", "_stack", "_mode", "_resume", "_role_key",
        "_leaf", "_quote", "_str", "_uni", "_pairs", "_held", "_root", "_root_shown",
    )  # fmt: skip

    @classmethod
    def __class_getitem__(cls, item: Any) -> Any:
        # StreamingParser[Model] in annotations and aliases, as when it was generic: the same class.
        return cls

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # The same in both builds: a compiled (native) class cannot make instances of an interpreted subclass.
        raise TypeError(f"{cls.__name__}: StreamingParser is not meant to be subclassed (it is compiled): wrap one")

    def __init__(self, target: Any) -> None:
        self.target = target
        try:  # shared by the parsers of one target: neither changes
            self.shape, self.adapter = _shared(target, repr(target))
        except TypeError:  # unhashable (Annotated with a list in its metadata), or not defined yet: its own
            self.shape, self.adapter = shape_of(target), TypeAdapter(target)
        self.version = 0  # bumps at each change a partial shows
        self.steps = 0  # work done: loop iterations, for the linear-cost test
        self.text_parts: list[str] = []
        self._stack: list[Node] = []
        self._mode = _RAW if self.shape.kind in _SCALARS else _PRE
        self._resume = _VAL  # the mode a comment returns to
        self._role_key = False  # the open string or bare word is a key
        self._leaf = self.shape  # shape of the open string or bare word
        self._quote = '"'
        self._str = ""
        self._uni = ""
        self._pairs = False  # the open string holds \u escapes of a surrogate pair, joined at its end
        self._held = ""  # _SQ: the single quote (and spaces after it) not yet known to close the string
        self._root: Any = MISSING
        self._root_shown: Any = None

    # -- input ---------------------------------------------------------------

    def feed(self, chunk: str) -> bool:
        """Read one chunk; True when the partial value changed."""
        self.text_parts.append(chunk)
        mode = self._mode
        if mode == _STR and self._quote not in chunk and "\\" not in chunk:  # the hot case: inside a string
            self._str += chunk
            self.steps += 1
            if chunk and not self._role_key and self._leaf.streams:
                self.version += 1
                return True
            return False
        before = self.version
        if mode == _POST:
            return False
        if mode == _RAW:
            if self.shape.streams or self.shape.kind == "str":
                self.version += 1
            return self.version != before
        i, n = 0, len(chunk)
        stack = self._stack
        steps = self.steps
        while i < n:
            steps += 1
            mode = self._mode
            if mode == _STR:
                found = _STOP[self._quote].search(chunk, i)
                end = found.start() if found is not None else n
                if end > i:
                    self._str += chunk[i:end]
                    if not self._role_key and self._leaf.streams:
                        self.version += 1
                if found is None:
                    break
                i = end + 1
                if chunk[end] == "\\":
                    self._mode = _ESC
                elif self._quote == "'":
                    self._held, self._mode = "'", _SQ  # a close or an apostrophe: what follows tells
                else:
                    self._end_string()
                continue
            c = chunk[i]
            if mode == _PRE:
                found = _START.search(chunk, i)
                if found is None:
                    break
                i = found.start()
                self._mode = _VAL
                continue
            if mode == _SEP:
                if c in _WS:
                    pass
                elif c == ",":
                    self._mode = _KEY if stack[-1].obj else _VAL
                elif c == "}" or c == "]":
                    self._close()
                elif c == "/":
                    self._resume, self._mode = _SEP, _SLASH
                else:  # a missing comma
                    self._mode = _KEY if stack[-1].obj else _VAL
                    continue
            elif mode == _VAL:
                if c in _WS or c == ",":
                    pass
                elif c == '"' or c == "'":
                    self._open_string(c, key=False)
                elif c == "{" or c == "[":
                    self._open(c == "{")
                elif c == "}" or c == "]":
                    self._close()
                elif c == "/":
                    self._resume, self._mode = _VAL, _SLASH
                else:
                    self._str, self._role_key, self._mode = c, False, _BARE
                    self._leaf = self._position()
            elif mode == _KEY:
                if c in _WS or c == ",":
                    pass
                elif c == '"' or c == "'":
                    self._open_string(c, key=True)
                elif c == "}" or c == "]":
                    self._close()
                elif c == "/":
                    self._resume, self._mode = _KEY, _SLASH
                else:
                    self._str, self._role_key, self._mode = c, True, _BARE
            elif mode == _COLON:
                if c in _WS:
                    pass
                elif c == ":":
                    self._mode = _VAL
                elif c == "}":
                    self._close()
                elif c == "/":
                    self._resume, self._mode = _COLON, _SLASH
                else:  # a missing colon
                    self._mode = _VAL
                    continue
            elif mode == _BARE:
                if self._role_key:
                    if c == ":":
                        self._set_key(self._str.strip())
                        self._mode = _VAL
                    elif c == "}":
                        self._close()
                    elif c == "/" and self._str[-1:].isspace():  # "name /* ... */ :": a comment after the key
                        self._set_key(self._str.strip())
                        self._resume, self._mode = _COLON, _SLASH
                    else:
                        self._str += c
                else:  # a bare value (number, literal, unquoted text) runs to the next delimiter
                    found = _BARE_END.search(chunk, i)
                    end = found.start() if found is not None else n
                    self._str += chunk[i:end]
                    if found is None:
                        break
                    i = end
                    if chunk[end] == "/":
                        if self._str[-1:].isspace():  # "null /* ... */": a comment after the value
                            self._end_bare()
                            self._resume, self._mode = _SEP, _SLASH
                        else:  # "2024/01/05": part of an unquoted value
                            self._str += "/"
                        i += 1
                    else:
                        self._end_bare()
                    continue
            elif mode == _ESC:
                if c == "u":
                    self._uni, self._mode = "", _UNI
                else:
                    self._str += _ESCAPES.get(c, c)
                    self._mode = _STR
                    if not self._role_key and self._leaf.streams:
                        self.version += 1
            elif mode == _UNI:
                self._uni += c
                if len(self._uni) == 4:
                    try:
                        code = int(self._uni, 16)
                    except ValueError:
                        self._str += "\\u" + self._uni
                        surrogate = False
                    else:
                        high = self._str[-1:]
                        # a low surrogate after a high one: the pair complete, one character
                        if 0xDC00 <= code <= 0xDFFF and _HIGH_FIRST <= high <= _HIGH_LAST:
                            self._str = self._str[:-1] + chr(0x10000 + (ord(high) - 0xD800) * 0x400 + code - 0xDC00)
                            surrogate = False
                        else:
                            self._str += chr(code)
                            surrogate = 0xD800 <= code <= 0xDFFF  # half of a pair: waits for the other half
                            self._pairs = self._pairs or surrogate  # (a half left alone is replaced at the end)
                    self._mode = _STR
                    if not surrogate and not self._role_key and self._leaf.streams:
                        self.version += 1  # the escaped character shows now, not with the next change
            elif mode == _SLASH:
                if c == "/":
                    self._mode = _LINE
                elif c == "*":
                    self._mode, self._uni = _BLOCK, ""
                else:
                    self._mode = self._resume
                    continue
            elif mode == _LINE:
                if c == "\n":
                    self._mode = self._resume
            elif mode == _BLOCK:
                if c == "/" and self._uni == "*":
                    self._mode = self._resume
                self._uni = c
            elif mode == _SQ:
                if c in _WS:
                    self._held += c
                    i += 1
                    continue
                if c in _SQ_CLOSE or ((c == "'" or c == '"') and len(self._held) > 1):
                    self._end_string()
                else:  # an apostrophe: the string goes on
                    self._str += self._held
                    self._mode = _STR
                    if not self._role_key and self._leaf.streams:
                        self.version += 1
                self._held = ""
                continue
            else:  # _POST
                break
            i += 1
        self.steps = steps
        return self.version != before

    # -- output --------------------------------------------------------------

    def partial(self) -> Any:
        """The value so far: complete values, open strings where the type is a string, open containers."""
        if self._root is not MISSING:
            return self._root_shown
        if self._mode == _RAW:
            return "".join(self.text_parts) if self.shape.kind == "str" else None
        child = MISSING
        if self._mode in (_STR, _ESC, _UNI, _SQ) and not self._role_key and self._leaf.streams:
            child = self._str
        for node in reversed(self._stack):
            child = node.view(child)
        return None if child is MISSING else child

    def finish(self) -> Any:
        """Close what is open (the output may be cut short) and return the validated value.

        Raises :class:`pydantic.ValidationError` when the value does not fit the type.
        """
        raw = self.value()
        return self.adapter.validate_python(raw, by_alias=True, by_name=True)

    def value(self) -> Any:
        """The whole answer as plain aligned data (dicts, lists, scalars), before validation."""
        if self._mode == _RAW:
            return align_answer(self.text(), self.shape)
        if self._root is MISSING:
            mode = self._mode
            if mode in (_STR, _ESC, _UNI, _SQ):
                self._held = ""
                if self._role_key:
                    self._mode = _COLON
                else:
                    self._end_string()
            elif mode == _BARE:
                if self._role_key:
                    self._mode = _COLON
                else:
                    self._end_bare()
            while self._stack:
                self._close()
        return None if self._root is MISSING else self._root

    def text(self) -> str:
        """Everything fed so far."""
        return "".join(self.text_parts)

    # -- building ------------------------------------------------------------

    def _position(self) -> Shape:
        if not self._stack:
            return self.shape
        node = self._stack[-1]
        if node.hidden or not node.known:  # inside a value no partial shows: it changes none
            return HIDDEN
        return node.child

    def _open(self, obj: bool) -> None:
        shape = self._position()
        hidden = shape is HIDDEN
        kind = shape.kind
        if kind == "union":
            fits = [
                a for a in shape.arms if (a.kind in ("model", "dict")) == obj and a.kind in ("model", "dict", "list")
            ]
            shape = fits[0] if len(fits) == 1 else ANY
            kind = shape.kind
        if obj:
            if kind == "list":
                item = shape.item or ANY
                node = Node(item if item.kind in ("model", "dict") else ANY, True, wrap=True)
            else:
                node = Node(shape if kind in ("model", "dict") else ANY, True)
        elif kind == "list" or kind == "any":
            node = Node(shape if kind == "list" else ANY, False)
        else:  # a list where one value was expected: take its only item
            node = Node(ANY, False, unwrap=True)
            node.child = shape
        node.hidden = hidden
        self._stack.append(node)
        self._mode = _KEY if obj else _VAL
        if not hidden:
            self.version += 1

    def _close(self) -> None:
        node = self._stack.pop()
        if node.obj:
            raw: Any = node.raw
            shown: Any = node.closed()
            if node.wrap:
                raw, shown = [raw], [shown]
        else:
            raw, shown = node.raw, node.shown
            if node.unwrap:
                raw = raw[0] if len(raw) == 1 else raw
                shown = shown[0] if len(shown) == 1 else shown
        self._put(raw, shown, changed=False)  # closing shows nothing new: its contents were shown as they came

    def _put(self, raw: Any, shown: Any, changed: bool = True) -> None:
        if not self._stack:
            if changed:
                self.version += 1
            self._root, self._root_shown = raw, shown
            self._mode = _POST
            return
        node = self._stack[-1]
        if changed and not node.hidden and node.known:  # (a value under an unknown key changes no partial)
            self.version += 1
        if node.obj:
            if node.key is not None:
                if raw is None and node.key in node.shape.defaulted:
                    pass  # null for a field with a default that takes no None (strict mode's "left out"): the default
                else:
                    node.raw[node.wire] = raw
                    if node.known:
                        node.put(node.key, shown)
                node.key = None
        else:
            node.raw.append(raw)
            node.shown.append(shown)
            node.cache = None
        self._mode = _SEP

    def _set_key(self, key: str) -> None:
        node = self._stack[-1]
        shape = node.shape
        if shape.kind == "model":
            found = shape.field(key)
            if found is not None:
                name, child = found
                node.key, node.wire, node.known, node.child = name, shape.wires[name], True, child
                return
            node.key, node.wire, node.known, node.child = key, key, False, ANY
            return
        node.key, node.wire, node.known = key, key, True
        node.child = shape.item if shape.kind == "dict" and shape.item is not None else ANY

    def _open_string(self, quote: str, *, key: bool) -> None:
        self._quote, self._str, self._role_key, self._mode = quote, "", key, _STR
        if not key:
            self._leaf = self._position()
            if self._leaf.streams:
                self.version += 1

    def _end_string(self) -> None:
        text = self._str
        self._str = ""
        if self._pairs:
            self._pairs = False
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        if self._role_key:
            self._set_key(text)
            self._mode = _COLON
            return
        shape = self._leaf
        if shape.kind == "str":  # the common case, as align would: a string for a string, shown as it streamed
            self._put(text, text, changed=False)
            return
        value = align(text, shape)
        # A streamed string was shown as it came; its end shows something new only if aligning changed it.
        self._put(value, display(value, shape), changed=not shape.streams or value is not text)

    def _end_bare(self) -> None:
        text = self._str.strip()
        self._str = ""
        shape = self._leaf
        if shape.kind == "int" and text.isascii() and text.isdigit():  # the common case, as align would
            try:
                value: Any = int(text)
            except ValueError:  # more digits than CPython converts (4300 by default): align's way, for validation
                pass
            else:
                self._put(value, value)
                return
        value = align(bare_value(text), shape)
        self._put(value, display(value, shape))


def parse(text: str, target: Any) -> Any:
    """Parse a whole answer into ``target`` (validated).

    >>> parse("```json\\n[1, '2', 3,]\\n```", list[int])
    [1, 2, 3]
    """
    parser = StreamingParser(target)
    parser.feed(text)
    return parser.finish()


__all__ += ["parse", "ValidationError"]
