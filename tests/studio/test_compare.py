"""The studio's compare in a real browser: two engines side by side, a vote found through the Python API,
the leaderboard in the page, and readable messages for a compare that cannot run."""

from __future__ import annotations

from PIL import Image

from tests.helpers.browser import needs_chromium, screenshot

pytestmark = needs_chromium

ANSWERS = {"Paris is the capital of France.": ["Paris ", "is ", "the ", "capital ", "of ", "France."],
           "It is Paris, on the Seine.": ["It ", "is ", "Paris, ", "on ", "the ", "Seine."]}


def open_compare(page, studio):
    page.goto(studio.url + "/studio/")
    page.get_by_role("tab", name="Compare").click()
    page.locator("#compare-prompt textarea").wait_for()


def pick(page, letter: str, model: str) -> None:
    box = page.locator(f"#compare-model-{letter} input")
    box.fill(model)
    box.press("Enter")


def status(page, text: str) -> None:
    """Wait for the status line to say `text`; a timeout says what the page showed instead."""
    from playwright.sync_api import TimeoutError as Timeout

    try:
        page.locator("#compare-status").get_by_text(text).wait_for(timeout=30_000)
    except Timeout:
        shown = {part: page.locator(f"#compare-{part}").all_inner_texts()
                 for part in ("status", "head-a", "out-a", "meta-a", "head-b", "out-b", "meta-b")}
        page.screenshot(path="/tmp/cmp-fail.png", full_page=True)
        raise AssertionError(f"waited for {text!r}; the page shows {shown}") from None


def test_compare_two_engines_vote_and_find_the_vote_through_the_api(page, studio, tmp_path):
    for deltas in ANSWERS.values():
        studio.mock().enqueue(deltas)
    open_compare(page, studio)
    page.locator("#compare-prompt textarea").fill("What is the capital of France?")
    pick(page, "a", "mock")
    pick(page, "b", "mock:other")
    page.locator("#compare-run").click()
    status(page, "Which answer is best")

    texts = {letter: page.locator(f"#compare-out-{letter}").inner_text() for letter in "ab"}
    for answer in ANSWERS:  # both columns streamed in; which model took which queued answer is the engine's
        assert sum(answer in text for text in texts.values()) == 1, texts
    meta = page.locator("#compare-meta-a").inner_text()
    assert "tok/s" in meta and "answered by" in meta and " s" in meta
    assert not page.locator("#compare-vote-c").is_visible()

    winner_letter = "a" if "Paris is the capital" in texts["a"] else "b"
    winner = {"a": "mock:echo", "b": "mock:other"}[winner_letter]
    page.locator(f"#compare-vote-{winner_letter}").click()
    status(page, "Vote recorded")
    assert page.locator("#compare-vote-a").is_disabled() and page.locator("#compare-tie").is_disabled()

    votes = studio.client.votes().list("ask")
    assert len(votes) == 1
    vote = votes[0]
    assert vote.winner == winner and vote.prompt == "What is the capital of France?"
    assert sorted(vote.models) == ["mock:echo", "mock:other"]
    for model, log_id in vote.candidates:  # each candidate's log id is its answer in the log
        row = studio.client.store.get(log_id)
        assert f"{row['engine']}:{row['model']}" == model and any(a in row["output_text"] for a in ANSWERS)

    assert page.locator(f"#compare-vote-{winner_letter}").inner_text().strip() == "★ Winner"
    board = page.locator("#compare-leaderboard")
    page.wait_for_function("document.querySelector('#compare-leaderboard').innerText.includes('1016')")
    shown = board.inner_text()  # the winner's row comes first, at 1000 + K/2
    loser = ({"mock:echo", "mock:other"} - {winner}).pop()
    assert shown.index(winner) < shown.index("1016") < shown.index(loser) < shown.index("984"), shown
    screenshot(page, "studio-compare", tmp_path)


def test_a_compare_that_cannot_run_says_why_and_the_page_keeps_working(page, studio, tmp_path):
    open_compare(page, studio)
    page.locator("#compare-prompt textarea").fill("Hello there")
    pick(page, "a", "mock")  # B stays empty
    page.locator("#compare-run").click()
    status(page, "a compare needs at least two models")

    pick(page, "b", "no-such-engine")  # one column fails, the other still answers
    page.locator("#compare-run").click()
    status(page, "Fewer than two models answered")
    page.locator("#compare-out-b").get_by_text("unknown model or engine 'no-such-engine'").wait_for()
    assert "Hello there" in page.locator("#compare-out-a").inner_text()
    assert page.locator("#compare-vote-a").is_disabled()

    pick(page, "b", "mock:other")
    picture = tmp_path / "dot.png"
    Image.new("RGB", (32, 32), (200, 40, 40)).save(picture)
    page.locator("#compare-image input[type=file]").set_input_files(str(picture))
    page.locator("#compare-image img").wait_for()
    page.locator("#compare-run").click()
    status(page, "Which answer is best")
    assert "Hello there" in page.locator("#compare-out-b").inner_text()
    for request in studio.mock().requests[-2:]:  # the picture went to both models with the prompt
        kinds = [type(part).__name__ for part in request.messages[-1].parts]
        assert kinds == ["Image", "Text"], kinds
    page.locator("#compare-tie").click()
    status(page, "a tie")
    tie = studio.client.votes().list("ask")[-1]
    assert tie.winner is None and tie.prompt == "Hello there"


def test_speak_compares_two_real_voices_side_by_side(page, studio, tmp_path):
    open_compare(page, studio)
    page.get_by_text("Speak: text to speech").click()
    page.locator("#compare-image").wait_for(state="hidden")  # the voices are offered now
    page.wait_for_function("document.querySelector('#compare-model-a input').value.startsWith('espeak')")
    pick(page, "a", "piper")
    pick(page, "b", "espeak")
    page.locator("#compare-prompt textarea").fill("The quick brown fox jumps over the lazy dog.")
    page.locator("#compare-run").click()
    status(page, "Which answer is best")
    for letter, ref in (("a", "piper:"), ("b", "espeak:")):
        assert page.locator(f"#compare-audio-{letter}").is_visible()
        meta = page.locator(f"#compare-meta-{letter}").inner_text()
        assert "s of audio" in meta and ref in meta, meta
    assert not page.locator("#compare-out-a").is_visible()  # a voice has no text to show
    page.locator("#compare-vote-b").click()
    status(page, "Vote recorded")
    vote = studio.client.votes().list("speak")[-1]
    assert vote.winner.startswith("espeak:") and all(log_id for _, log_id in vote.candidates)
    page.wait_for_function("document.querySelector('#compare-leaderboard').innerText.includes('espeak:')")
    board = page.locator("#compare-leaderboard").inner_text()  # the speak leaderboard, not ask's
    assert board.index("espeak:") < board.index("piper:") and "mock:" not in board, board
