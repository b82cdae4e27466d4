"""Pins down rxkit.operators.sentence_chunker where mutation testing found it loose (issue 18).

The reset between turns (code-fence and line-start state), max_chars reached
exactly and the forced cut's separators, TextDelta subclasses, Sentence
elements passed through, list numbers and abbreviations at their edges.
"""

from __future__ import annotations

from typing import Any

import pytest
import reactivex
from reactivex import operators as ops

from rxkit.elements import EndOfStream, EndOfTurn, Interrupt, Sentence, TextDelta
from rxkit.errors import ConfigError
from rxkit.operators import sentence_chunker, strip_markdown


def run(*elements: Any, **options: Any) -> list[Any]:
    items = [TextDelta(e) if isinstance(e, str) else e for e in elements]
    return reactivex.from_iterable(items).pipe(sentence_chunker(**options), ops.to_list()).run()


def texts(out: list[Any]) -> list[Any]:
    return [x.text if type(x) is Sentence else type(x).__name__ for x in out]


@pytest.mark.parametrize("end", [EndOfTurn, EndOfStream])
def test_an_open_code_fence_does_not_carry_into_the_next_turn(end: type) -> None:
    out = run("Look:\n```\ncode line\n", end(), "Spoken again.", drop_code=True)
    assert texts(out) == ["Look:", end.__name__, "Spoken again."]


def test_an_interrupt_also_closes_an_open_code_fence() -> None:
    out = run("Look:\n```\ncode line\n", Interrupt(), "Spoken again.", drop_code=True)
    assert texts(out) == ["Look:", "Interrupt", "Spoken again."]


@pytest.mark.parametrize("end", [EndOfTurn, EndOfStream, Interrupt])
def test_a_new_turn_starts_at_the_start_of_a_line(end: type) -> None:
    # The first turn ends right after a sentence end (not a line break): the next turn's
    # "1." opens a line, so it is a list number, not a sentence of its own.
    out = run("Done. ", end(), "1. Milk and eggs.\n")
    assert texts(out) == ["Done.", end.__name__, "Milk and eggs."]


def test_after_a_line_break_a_number_is_a_list_number() -> None:
    assert texts(run("Buy:\n2. Bread now.\n")) == ["Buy:", "Bread now."]
    assert texts(run("I counted to 2. Then stopped.")) == ["I counted to 2.", "Then stopped."]
    assert texts(run("Buy:\n  \t3. Jam today.\n")) == ["Buy:", "Jam today."]


def test_text_delta_subclasses_are_chunked_but_sentences_pass_through() -> None:
    class Thought(TextDelta):
        __slots__ = ()

    done = Sentence("Already whole")
    out = run(Thought("One. Tw"), Thought("o."), done, " Three.")
    assert texts(out) == ["One.", "Already whole", "Two.", "Three."]  # "Two." waited for what follows it
    assert out[1] is done


def test_a_sentence_element_is_not_rechunked() -> None:
    done = Sentence("Mr. X. Dr. **Y**.")
    out = run(done)
    assert out == [done] and out[0] is done


def test_max_chars_exactly_reached_is_not_cut() -> None:
    text = "a" * 19 + " " + "b" * 10  # 30 characters, no sentence end
    assert texts(run(text, max_chars=30)) == [text]
    assert texts(run(text + "c", max_chars=30)) == ["a" * 19, "b" * 10 + "c"]


def test_max_chars_minimum_is_20() -> None:
    sentence_chunker(max_chars=20)
    with pytest.raises(ConfigError, match="max_chars must be at least 20, not 19"):
        sentence_chunker(max_chars=19)


@pytest.mark.parametrize("sep", [", ", "; ", ": ", " - "])
def test_forced_cut_prefers_punctuation_to_a_space(sep: str) -> None:
    head = "alpha beta gamma" + sep.rstrip()  # the separator well past a third of the limit
    text = head + " delta epsilon zeta eta theta iota kappa lambda"
    out = texts(run(text, max_chars=30))
    assert out[0] == head.strip()


def test_forced_cut_ignores_a_separator_in_the_first_third() -> None:
    text = "ab, " + "c" * 12 + " " + "d" * 30
    out = texts(run(text, max_chars=30))
    assert out[0] == "ab, " + "c" * 12  # cut at the last space, not at the early comma


def test_forced_cut_with_no_space_cuts_at_the_limit() -> None:
    text = "x" * 45
    assert texts(run(text, max_chars=20)) == ["x" * 20, "x" * 20, "x" * 5]


def test_forced_cut_with_a_separator_exactly_at_a_third() -> None:
    text = "a" * 10 + " " + "b" * 25  # max 30: the space at index 10 == 30 // 3 does not count
    assert texts(run(text, max_chars=30)) == ["a" * 10 + " " + "b" * 19, "b" * 6]


def test_forced_cut_strips_spaces_and_tabs_after_the_cut() -> None:
    out = run("w" * 15 + ",  \tnext words here and more text", max_chars=20)
    assert texts(out)[1].startswith("next")


def test_after_a_forced_cut_the_rest_is_scanned_from_its_start() -> None:
    assert texts(run("c" * 25, " Go. Now.", max_chars=22)) == ["c" * 22, "ccc Go.", "Now."]


def test_sentence_ends_followed_by_closers_and_more_terminators() -> None:
    assert texts(run('He said "Stop!" Then left.')) == ['He said "Stop!"', "Then left."]
    assert texts(run("What?! Really.")) == ["What?!", "Really."]
    assert texts(run("Wait… Okay.")) == ["Wait…", "Okay."]
    assert texts(run("Wait… okay then.")) == ["Wait… okay then."]
    assert texts(run("So... \tYes.")) == ["So...", "Yes."]


def test_an_ellipsis_at_the_end_of_the_text_waits_for_more() -> None:
    assert texts(run("Hmm...", " ", "and so.")) == ["Hmm... and so."]
    assert texts(run("Hmm... ", "", "So.")) == ["Hmm...", "So."]


def test_abbreviations_and_dotted_words_in_any_case_and_after_openers() -> None:
    assert texts(run("See (e.g. this) now. Next.")) == ["See (e.g. this) now.", "Next."]
    assert texts(run("Ask DR. Who now. Ok.")) == ["Ask DR. Who now.", "Ok."]
    assert texts(run("It is 5 P.M. Then tea.")) == ["It is 5 P.M. Then tea."]
    assert texts(run("Ask (Prof. X) now. Ok.")) == ["Ask (Prof. X) now.", "Ok."]
    assert texts(run("The end \u201c. Next.")) == ["The end \u201c.", "Next."]


def test_a_lone_lowercase_letter_ends_a_sentence_but_an_initial_does_not() -> None:
    assert texts(run("Plan b. Go now.")) == ["Plan b.", "Go now."]
    assert texts(run("J. Smith came. Ok.")) == ["J. Smith came.", "Ok."]


def test_a_period_after_a_space_ends_a_sentence() -> None:
    assert texts(run("Odd . Next one.")) == ["Odd .", "Next one."]


def test_line_breaks_end_sentences_and_blank_lines_are_dropped() -> None:
    assert texts(run("one\n\ntwo\nthree")) == ["one", "two", "three"]


def test_strip_markdown_rules() -> None:
    assert strip_markdown("# Title") == "Title"
    assert strip_markdown("####### Seven") == "####### Seven"
    assert strip_markdown("> quoted") == "quoted"
    assert strip_markdown("1) first") == "first"
    assert strip_markdown("___") == ""
    assert strip_markdown("- - -", line_start=True) != "- - -"
    assert strip_markdown("![alt text](pic.png) and ~~gone~~ *it* _it_") == "alt text and gone it it"
    assert strip_markdown("a  \t b") == "a b"
    assert strip_markdown("**open") == "open"
    assert strip_markdown("# Title", line_start=False) == "# Title"


def test_tilde_fences_are_code_fences_too() -> None:
    assert texts(run("Run:\n~~~\nx = 1\n~~~\nDone.\n", drop_code=True)) == ["Run:", "Done."]
    assert texts(run("Run:\n~~~\nx = 1\n~~~\nDone.\n")) == ["Run:", "x = 1", "Done."]


def test_a_fence_marker_inside_a_line_is_not_a_fence() -> None:
    assert texts(run("Hi. ```x\nok\n", drop_code=True)) == ["Hi.", "x", "ok"]  # mid-line: not a fence


def test_an_ellipsis_before_a_capital_x_splits() -> None:
    assert texts(run("Wait... Xavier came.")) == ["Wait...", "Xavier came."]


def test_a_short_word_then_an_ellipsis_at_the_end_waits_for_more() -> None:
    assert texts(run("I... ", "think so.")) == ["I... think so."]


def test_after_a_lowercase_ellipsis_the_same_sentence_can_still_end() -> None:
    assert texts(run("Wait... maybe so. Next one.")) == ["Wait... maybe so.", "Next one."]


def test_the_default_max_chars_is_250() -> None:
    text = "w " * 125 + "x"  # 251 characters, no sentence end
    assert len(texts(run(text))) == 2
    assert texts(run(text[:-2] + "x")) == [(text[:-2] + "x").strip()]  # 250: not cut


def test_mid_line_sentences_keep_line_markers() -> None:
    assert texts(run("Look. > quoted.\n")) == ["Look.", "> quoted."]
    assert texts(run("w" * 19 + " > rest of it", max_chars=20)) == ["w" * 19, "> rest of it"]


def test_a_terminator_opening_the_text_is_a_sentence_end() -> None:
    assert texts(run("! Hi. Bye.")) == ["Hi.", "Bye."]
    assert texts(run("w" * 20 + "!", " Next.", max_chars=20)) == ["w" * 20, "Next."]


def test_the_next_sentence_keeps_its_first_letters() -> None:
    assert texts(run("Hi. Xavier came.")) == ["Hi.", "Xavier came."]
    assert texts(run("w" * 19 + " Xavier", max_chars=20)) == ["w" * 19, "Xavier"]


def test_stage_metadata_and_the_scheduler_passed_upstream() -> None:
    from reactivex.disposable import Disposable
    from reactivex.testing import TestScheduler

    from rxkit.graph.stage import StageKind

    stage = sentence_chunker()
    assert (stage.name, stage.kind) == ("sentence_chunker", StageKind.ACCUMULATE)
    assert stage.description == "model text -> whole sentences for TTS"
    seen: list[Any] = []

    def source(observer: Any, scheduler: Any = None) -> Any:
        seen.append(scheduler)
        return Disposable()

    sch = TestScheduler()
    reactivex.create(source).pipe(stage).subscribe(scheduler=sch)
    assert seen == [sch]
