"""SentenceSplitter and speakable: reply text cut into pieces a voice can say, however the text streams in."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from imagine.realtime.sentences import SentenceSplitter, speakable


def split(deltas: list[str], first_clause_words: int = 8) -> list[str]:
    splitter = SentenceSplitter(first_clause_words)
    pieces: list[str] = []
    for delta in deltas:
        pieces += splitter.push(delta)
    return pieces + splitter.flush()


def cut(text: str, points: list[int]) -> list[str]:
    bounds = [0, *sorted({p % (len(text) + 1) for p in points}), len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


# Replies built from words, sentence ends, clause marks, abbreviations, numbers and markdown: everything
# the splitter has a rule for.
_WORDS = ["the", "dragon", "flew", "over", "a", "river", "and", "then", "it", "slept", "Paris", "is", "big",
          "Dr.", "Mr.", "e.g.", "i.e.", "etc.", "3.5", "1.", "2.", "42", "U.S.", "A.", "5 - 3"]
_MARKS = [".", "!", "?", "...", "…", ",", ";", ":", "!?", ".\"", ")"]
_MARKDOWN = ["**bold**", "`code`", "# Title", "- item", "\n", "\n\n", "  "]


@st.composite
def replies(draw: st.DrawFn, markdown: bool = True) -> str:
    """Sentences of 1-12 words (some followed by a clause mark), each with an end mark or none, joined by
    spaces (or, with markdown, newlines and markdown tokens)."""
    words = _WORDS + (_MARKDOWN if markdown else [])
    text = ""
    for _ in range(draw(st.integers(0, 6))):
        for _ in range(draw(st.integers(1, 12))):
            text += (" " if text else "") + draw(st.sampled_from(words))
            if draw(st.integers(0, 4)) == 0:
                text += draw(st.sampled_from([",", ";", ":"]))
        text += draw(st.sampled_from(_MARKS + [""]))
        if markdown and draw(st.booleans()):
            text += draw(st.sampled_from(["\n", "\n\n", "  "]))
    return text


@settings(max_examples=300, deadline=None)
@given(replies(), st.lists(st.integers(min_value=0), max_size=40), st.integers(min_value=1, max_value=10))
def test_streamed_deltas_give_the_same_pieces_as_one_push(text: str, points: list[int], clause_words: int) -> None:
    whole = split([text], clause_words)
    assert split(cut(text, points), clause_words) == whole
    assert split(list(text), clause_words) == whole  # one character at a time
    assert all(piece and piece == piece.strip() for piece in whole)


@settings(max_examples=200, deadline=None)
@given(replies(markdown=False), st.lists(st.integers(min_value=0), max_size=20))
def test_the_pieces_hold_every_word_in_order(text: str, points: list[int]) -> None:
    assert " ".join(split(cut(text, points))).split() == text.split()


def test_sentence_ends() -> None:
    assert split(["Hello there. How are you? Fine! Good…  And you"]) == [
        "Hello there.", "How are you?", "Fine!", "Good…", "And you"]
    assert split(['He said "stop." Then he left.']) == ['He said "stop."', "Then he left."]
    assert split(["Really?! Yes... I think so."]) == ["Really?!", "Yes...", "I think so."]
    # a sentence end is only an end once the next word starts: no piece before the space arrives
    splitter = SentenceSplitter()
    assert splitter.push("It is done.") == []
    assert splitter.push(" Next") == ["It is done."]
    assert splitter.flush() == ["Next"]
    assert splitter.flush() == []


def test_no_split_after_abbreviations_or_inside_numbers() -> None:
    assert split(["Ask Dr. Smith about it. He knows."]) == ["Ask Dr. Smith about it.", "He knows."]
    assert split(["Bring fruit, e.g. apples and pears. Thanks."]) == ["Bring fruit, e.g. apples and pears.",
                                                                       "Thanks."]
    assert split(["That is i.e. the same thing. Yes."]) == ["That is i.e. the same thing.", "Yes."]
    assert split(["Mr. and Mrs. Jones paid 3.5 dollars. Then 4.25 more."]) == [
        "Mr. and Mrs. Jones paid 3.5 dollars.", "Then 4.25 more."]
    assert split(["Pi is about 3.14159 and e is 2.718 or so."]) == ["Pi is about 3.14159 and e is 2.718 or so."]
    assert split(["1. Boil the water. 2. Add the pasta."]) == ["1. Boil the water.", "2. Add the pasta."]


def test_only_the_first_piece_may_end_at_a_comma() -> None:
    eight = "One two three four five six seven eight"
    text = f"{eight}, nine ten eleven. {eight}, nine ten eleven. Done."
    assert split([text]) == [f"{eight},", "nine ten eleven.", f"{eight}, nine ten eleven.", "Done."]
    # fewer than 8 words before the comma: no early cut
    assert split(["One two three, four five six seven eight nine. Done."]) == [
        "One two three, four five six seven eight nine.", "Done."]
    # a colon or semicolon counts as a clause end too; the first eligible one is taken
    assert split([f"{eight}: nine, ten eleven twelve thirteen fourteen fifteen sixteen, end."]) == [
        f"{eight}:", "nine, ten eleven twelve thirteen fourteen fifteen sixteen, end."]
    # the early cut waits for a word after the comma, as it would when streamed
    splitter = SentenceSplitter()
    assert splitter.push(f"{eight}, ") == []
    assert splitter.push("nine") == [f"{eight},"]
    assert splitter.push(" ten, eleven twelve thirteen fourteen fifteen sixteen seventeen, x") == []
    assert splitter.flush() == ["nine ten, eleven twelve thirteen fourteen fifteen sixteen seventeen, x"]
    # first_clause_words is the knob
    assert split(["One two three, four five. Six."], first_clause_words=3) == ["One two three,", "four five.",
                                                                               "Six."]


def test_flush_returns_the_rest() -> None:
    splitter = SentenceSplitter()
    assert splitter.push("A first sentence. And a second one without") == ["A first sentence."]
    assert splitter.flush() == ["And a second one without"]
    assert splitter.flush() == [] and splitter.buffer == ""
    assert SentenceSplitter().flush() == []
    splitter = SentenceSplitter()
    assert splitter.push("**") == [] and splitter.flush() == []  # nothing speakable: no piece


def test_speakable_strips_markdown() -> None:
    assert speakable("**Bold** and *italic* and ***both***") == "Bold and italic and both"
    assert speakable("Use `print()` or ```python code```") == "Use print() or python code"
    assert speakable("# Title\n## Sub title\nText") == "Title Sub title Text"
    assert speakable("- one\n* two\n+ three\n  - nested") == "one two three nested"
    assert speakable("__init__ stays a word") == "init stays a word"
    assert speakable("  spaced \n\n out\t text ") == "spaced out text"
    assert speakable("5 - 3 = 2, and a-b stays") == "5 - 3 = 2, and a-b stays"  # a dash inside a line stays
    assert split(["**Paris** is the capital. - It is big.\n- It is old."]) == [
        "Paris is the capital.", "It is big.", "It is old."]
