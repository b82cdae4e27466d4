"""Stream elements: value equality, control flags, fields of subclasses."""

from __future__ import annotations

from rxkit.elements import (
    AudioFrame,
    Control,
    Element,
    EndOfStream,
    EndOfTurn,
    ErrorElement,
    Interrupt,
    TextDelta,
    is_control,
)


def test_equality_is_by_type_and_fields() -> None:
    assert TextDelta("a") == TextDelta("a")
    assert TextDelta("a") != TextDelta("b")
    assert hash(TextDelta("a")) == hash(TextDelta("a"))
    assert EndOfTurn() == EndOfTurn()
    assert EndOfTurn() != EndOfStream()  # same (empty) fields, different kinds
    assert Interrupt("x") != Interrupt("y")
    assert TextDelta("a") != "a"
    assert {TextDelta("a"), TextDelta("a"), TextDelta("b")} == {TextDelta("a"), TextDelta("b")}


def test_subclass_fields_include_the_base_fields() -> None:
    class RoleDelta(TextDelta):
        __slots__ = ("role",)

        def __init__(self, text: str, role: str) -> None:
            super().__init__(text)
            self.role = role

    assert RoleDelta("hi", "user") == RoleDelta("hi", "user")
    assert RoleDelta("hi", "user") != RoleDelta("bye", "user")  # the base's field counts
    assert RoleDelta("hi", "user") != TextDelta("hi")
    assert repr(RoleDelta("hi", "user")) == "RoleDelta(text='hi', role='user')"


def test_repr_names_fields() -> None:
    assert repr(TextDelta("Hel")) == "TextDelta(text='Hel')"
    assert repr(Interrupt("barge-in")) == "Interrupt(reason='barge-in')"
    assert repr(EndOfStream()) == "EndOfStream()"


def test_control_flags() -> None:
    for c in (EndOfTurn(), Interrupt(), EndOfStream()):
        assert is_control(c) and isinstance(c, Control)
    assert Interrupt().urgent and not EndOfTurn().urgent and not EndOfStream().urgent
    for x in (TextDelta("a"), AudioFrame(b"\0\0", 16000), ErrorElement(ValueError()), "text", None, 3):
        assert not is_control(x)

    class Liar:
        control = "yes"  # truthy but not True: not a control element

    assert not is_control(Liar())


def test_elements_are_slotted() -> None:
    for el in (TextDelta("a"), EndOfTurn(), Interrupt(), AudioFrame(b"", 8000)):
        assert not hasattr(el, "__dict__")
    assert Element.__slots__ == ()


def test_audio_frame_duration() -> None:
    assert AudioFrame(b"\0" * 3200, 16000).duration == 0.1  # 1600 samples of s16 mono
    assert AudioFrame(b"\0" * 3200, 16000, channels=2).duration == 0.05
    assert AudioFrame([0] * 480, 48000).duration == 0.01  # an array counts samples, not bytes


def test_error_element_carries_the_stage() -> None:
    err = ValueError("tool failed")
    el = ErrorElement(err, stage="tools")
    assert el.error is err and el.stage == "tools"
    assert not el.control
