"""sentence_chunker: sentence ends, markdown, controls, on virtual time."""

# ruff: noqa: RUF001 (CJK text is written with fullwidth punctuation)

from __future__ import annotations

import pytest
import reactivex
from reactivex import operators as ops

from rxkit.elements import EndOfStream, EndOfTurn, Interrupt, MessageElement, Sentence, TextDelta
from rxkit.errors import ConfigError
from rxkit.operators import sentence_chunker, strip_markdown
from rxkit.testing import run_virtual
from rxkit.types import Message


def chunk(text: str, step: int = 3, **options: object) -> list[str]:
    """Stream ``text`` in ``step``-character deltas (as a model would) and collect the sentences."""
    deltas = [TextDelta(text[i : i + step]) for i in range(0, len(text), step)]
    out = reactivex.from_iterable(deltas).pipe(sentence_chunker(**options), ops.to_list()).run()
    assert all(type(s) is Sentence for s in out)
    return [s.text for s in out]


def test_first_sentence_goes_out_before_the_model_finishes() -> None:
    deltas = [(0.1, "Hello"), (0.2, " there."), (0.3, " How"), (0.4, " are"), (0.5, " you?"), (0.6, " Fine")]
    result = run_virtual(sentence_chunker(), [(t, TextDelta(s)) for t, s in deltas], complete_at=2.0)
    assert result.timeline() == [
        (0.3, Sentence("Hello there.")),  # as soon as the next token shows the sentence ended
        (0.6, Sentence("How are you?")),
        (2.0, Sentence("Fine")),  # the rest, at completion
    ]
    assert result.completed_at == 2.0
    assert result.subscription == (0.0, 2.0)


def test_end_of_turn_flushes_the_rest_then_passes_in_order() -> None:
    events = [(0.1, TextDelta("One. Two")), (0.5, EndOfTurn()), (0.6, TextDelta("Three")), (0.9, EndOfStream())]
    result = run_virtual(sentence_chunker(), events, complete_at=1.0)
    assert result.timeline() == [
        (0.1, Sentence("One.")),  # the space after it, in the same delta, shows the end
        (0.5, Sentence("Two")),  # the rest of the turn, flushed by EndOfTurn, before it
        (0.5, EndOfTurn()),
        (0.9, Sentence("Three")),
        (0.9, EndOfStream()),
    ]
    assert result.subscription == (0.0, 1.0)


def test_interrupt_drops_the_partial_sentence_and_passes_at_once() -> None:
    events = [
        (0.1, TextDelta("Done. Half a sen")),
        (0.2, Interrupt("barge-in")),
        (0.3, TextDelta("New one.")),
        (0.4, EndOfTurn()),
    ]
    result = run_virtual(sentence_chunker(), events, complete_at=1.0)
    assert result.timeline() == [
        (0.1, Sentence("Done.")),
        (0.2, Interrupt("barge-in")),
        (0.4, Sentence("New one.")),
        (0.4, EndOfTurn()),
    ]


def test_other_elements_pass_through_untouched() -> None:
    message = MessageElement(Message.user("hi"))
    result = run_virtual(sentence_chunker(), [(0.1, message), (0.2, TextDelta("Ok."))], complete_at=0.5)
    assert result.timeline() == [(0.1, message), (0.5, Sentence("Ok."))]


def test_dispose_ends_the_subscription_and_emits_nothing_more() -> None:
    events = [(0.1, TextDelta("First. Sec")), (0.5, TextDelta("ond.")), (0.6, EndOfTurn())]
    result = run_virtual(sentence_chunker(), events, dispose_at=0.3)
    assert result.timeline() == [(0.1, Sentence("First."))]
    assert result.subscription == (0.0, 0.3)
    assert not result.completed


def test_error_passes_through_and_unsubscribes() -> None:
    boom = RuntimeError("model failed")
    result = run_virtual(sentence_chunker(), [(0.1, TextDelta("Partial"))], error_at=(0.2, boom))
    assert result.values == []
    assert result.error is boom
    assert result.subscription == (0.0, 0.2)


@pytest.mark.parametrize("step", [1, 2, 5, 100])
def test_basic_punctuation_whatever_the_delta_size(step: int) -> None:
    assert chunk("Hello there. How are you? I'm fine! Great.", step) == [
        "Hello there.",
        "How are you?",
        "I'm fine!",
        "Great.",
    ]


def test_abbreviations_do_not_end_sentences() -> None:
    text = "Mr. Smith and Mrs. Jones met Dr. Who, e.g. at noon, i.e. lunch, etc. in the U.S. and more. Next one."
    assert chunk(text) == [
        "Mr. Smith and Mrs. Jones met Dr. Who, e.g. at noon, i.e. lunch, etc. in the U.S. and more.",
        "Next one.",
    ]


def test_initials_and_decimals_do_not_end_sentences() -> None:
    assert chunk("J. R. R. Tolkien wrote it. Pi is 3.14 today. It costs $3.50. Version 2.0.1 works.") == [
        "J. R. R. Tolkien wrote it.",
        "Pi is 3.14 today.",
        "It costs $3.50.",
        "Version 2.0.1 works.",
    ]


def test_a_number_ending_a_sentence_still_ends_it() -> None:
    assert chunk("The answer is 4. Then we stop.") == ["The answer is 4.", "Then we stop."]


def test_ellipses_split_only_before_a_new_sentence() -> None:
    assert chunk("Well... maybe not. Wait... What? Hmm… Okay.") == [
        "Well... maybe not.",
        "Wait...",
        "What?",
        "Hmm…",
        "Okay.",
    ]


def test_quotes_and_brackets_stay_with_their_sentence() -> None:
    assert chunk('He said "Stop." Then he left. (It was late.) Really?! Yes.') == [
        'He said "Stop."',
        "Then he left.",
        "(It was late.)",
        "Really?!",
        "Yes.",
    ]


def test_urls_and_file_names_do_not_split() -> None:
    text = "Visit example.com.au now. Open main.py first."
    assert chunk(text) == ["Visit example.com.au now.", "Open main.py first."]


def test_markdown_is_stripped() -> None:
    text = (
        "## The Heading\n\n**Bold** and *italic* and __strong__ and _em_ with `code`. "
        "See [the docs](https://example.com/a.b). ![a cat](cat.png) sits. ~~Old~~ text."
    )
    assert chunk(text) == [
        "The Heading",
        "Bold and italic and strong and em with code.",
        "See the docs.",
        "a cat sits.",
        "Old text.",
    ]


def test_lists_become_one_sentence_per_item_without_bullets() -> None:
    text = "Steps:\n1. Preheat the oven.\n2) Mix the flour.\n- one\n* two\n+ three\n> quoted\n---\nEnd."
    assert chunk(text) == ["Steps:", "Preheat the oven.", "Mix the flour.", "one", "two", "three", "quoted", "End."]


def test_code_fences_are_removed_and_code_optionally_dropped() -> None:
    text = "Run this:\n```python\nprint('hi')\n```\nThen relax."
    assert chunk(text) == ["Run this:", "print('hi')", "Then relax."]
    assert chunk(text, drop_code=True) == ["Run this:", "Then relax."]


def test_snake_case_and_arithmetic_survive() -> None:
    assert chunk("Call snake_case_name with 2 * 3 now.") == ["Call snake_case_name with 2 * 3 now."]


def test_emphasis_open_across_a_sentence_end_leaves_no_markers() -> None:
    assert chunk("**First part. Second part.** Third.") == ["First part.", "Second part.", "Third."]


def test_long_runs_without_an_end_are_cut_at_a_comma() -> None:
    text = "word, " * 80 + "end."
    out = chunk(text, max_chars=100)
    assert len(out) > 3
    assert all(len(s) <= 100 for s in out)
    assert all(s.endswith(",") for s in out[:-1])
    assert " ".join(out).split() == text.split()


def test_nothing_speakable_is_not_emitted() -> None:
    assert chunk("---\n\n```\n```\n**  **\n") == []


def test_strip_markdown_helper() -> None:
    assert strip_markdown("### **Bold** [link](http://x.y) and `code`") == "Bold link and code"
    assert strip_markdown("- item", line_start=False) == "- item"


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        sentence_chunker(max_chars=5)


def test_cjk_sentence_marks_end_sentences_as_they_stream() -> None:
    # Chinese and Japanese put no space after a sentence mark: the next character shows the end.
    deltas = [(0.1, "你好。"), (0.2, "今天天气"), (0.3, "很好！你"), (0.4, "呢？"), (0.5, "好")]
    result = run_virtual(sentence_chunker(), [(t, TextDelta(s)) for t, s in deltas], complete_at=2.0)
    assert result.timeline() == [
        (0.2, Sentence("你好。")),  # long before the answer ends
        (0.3, Sentence("今天天气很好！")),
        (0.5, Sentence("你呢？")),
        (2.0, Sentence("好")),
    ]
    assert result.subscription == (0.0, 2.0)


@pytest.mark.parametrize("step", [1, 2, 100])
def test_cjk_fullwidth_and_halfwidth_marks_and_closing_quotes(step: int) -> None:
    text = "「はい。」と言った．本当ですか！？円周率は３．１４です｡終わり"
    assert chunk(text, step) == ["「はい。」", "と言った．", "本当ですか！？", "円周率は３．１４です｡", "終わり"]
    assert chunk("Hi. 他说：“好。”然后走了。", step) == ["Hi.", "他说：“好。”", "然后走了。"]


# -- first_clause_words: the reply's first chunk may be a clause -------------------------------------------


def test_the_first_clause_goes_out_before_the_first_sentence_ends() -> None:
    deltas = [(0.1, "Well,"), (0.2, " I think"), (0.3, " that Paris,"), (0.4, " the capital,"), (0.5, " is lovely."),
              (0.6, " Go,"), (0.7, " see it.")]  # fmt: skip
    result = run_virtual(sentence_chunker(first_clause_words=4), [(t, TextDelta(s)) for t, s in deltas], complete_at=2)
    assert result.timeline() == [
        (0.4, Sentence("Well, I think that Paris,")),  # 5 words before the comma, and the space after it came
        (0.6, Sentence("the capital, is lovely.")),  # later chunks are whole sentences
        (2.0, Sentence("Go, see it.")),
    ]
    assert result.subscription == (0.0, 2.0)
    # Off (the default): the first sentence, whole.
    plain = run_virtual(sentence_chunker(), [(t, TextDelta(s)) for t, s in deltas], complete_at=2)
    assert plain.timeline()[0] == (0.6, Sentence("Well, I think that Paris, the capital, is lovely."))


@pytest.mark.parametrize(
    ("text", "first"),
    [
        ("One two three four, five six. Seven.", "One two three four,"),  # exactly N words
        ("One two three, four five six, seven. Eight.", "One two three, four five six,"),  # N-1: the next one
        ("One two three four; five six. Seven.", "One two three four;"),
        ("One two three four: five six. Seven.", "One two three four:"),
        ("One two three four - five six. Seven.", "One two three four -"),
        ("One two three four \u2013 five six. Seven.", "One two three four \u2013"),
        ("One two three four \u2014 five six. Seven.", "One two three four \u2014"),
        ("One two three four -- five six. Seven.", "One two three four --"),
        ("It costs 3,000 or 10:30 well-known a-b items. Yes, fine.", "It costs 3,000 or 10:30 well-known a-b items."),
        ("Hi there. One two three four, five.", "Hi there."),  # a sentence end first: the sentence
        ("One two three four\u2014five six. Seven.", "One two three four\u2014five six."),  # a dash in a word
        # Before a conjunction that opens a clause (it goes with the rest), after N words; a whole word only.
        ("The sentence is grammatically incorrect and needs a fix. Yes.", "The sentence is grammatically incorrect"),
        ("One two three four but five. Six.", "One two three four"),
        ("One two three four  because five. Six.", "One two three four"),
        ("One two three four which five. Six.", "One two three four"),
        ("Salt and pepper are tasty, and cheap. Yes.", "Salt and pepper are tasty,"),  # 1 word before "and"
        ("One two three four android five. Six.", "One two three four android five."),  # not a conjunction
        ("One two three four or five. Six.", "One two three four or five."),  # "or" lists: not cut
        ("One two three four And five. Six.", "One two three four And five."),
    ],
)
def test_a_first_clause_ends_at_a_comma_semicolon_colon_or_spaced_dash_after_enough_words(
    text: str, first: str
) -> None:
    for step in (1, 3, len(text)):
        assert chunk(text, step, first_clause_words=4)[0] == first, step


def test_only_the_first_chunk_of_each_reply_is_a_clause() -> None:
    reply = "Well then, my dear friend, here it is. Now, my dear friend, listen to me. "
    items = [TextDelta(reply), EndOfTurn(), TextDelta(reply[:36]), Interrupt("x"), TextDelta(reply), EndOfStream()]
    out = reactivex.from_iterable(items).pipe(sentence_chunker(first_clause_words=3), ops.to_list()).run()
    sentences = ["Well then, my dear friend,", "here it is.", "Now, my dear friend, listen to me."]
    clause, *_ = sentences
    assert [x.text if isinstance(x, Sentence) else type(x).__name__ for x in out] == [
        *sentences, "EndOfTurn",  # after an EndOfTurn, a new reply: its first chunk is a clause again
        clause, "Interrupt",  # cut: the rest is dropped, and the next reply starts afresh
        *sentences, "EndOfStream",
    ]  # fmt: skip


def test_a_clause_inside_a_code_block_is_not_cut_and_a_forced_cut_counts_as_the_first_chunk() -> None:
    code = "```\nalpha beta gamma delta, epsilon\n```\nOne two three four, five."
    # The code line is the reply's first chunk, whole (a clause is not cut inside code); then sentences.
    assert chunk(code, 4, first_clause_words=4) == ["alpha beta gamma delta, epsilon", "One two three four, five."]
    long = "word " * 60 + "end, and more. Then one two three four, five."
    out = chunk(long, 7, first_clause_words=4, max_chars=40)
    assert out[0] == ("word " * 8).strip() and out[-1] == "Then one two three four, five."


def test_first_clause_words_must_not_be_negative() -> None:
    sentence_chunker(first_clause_words=0)
    with pytest.raises(ConfigError, match="first_clause_words"):
        sentence_chunker(first_clause_words=-1)
