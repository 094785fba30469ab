"""The studio's Tasks tab in a real browser, on the bundled engines (Whisper tiny.en, Piper, PP-OCR): read the
text in an uploaded picture (boxes drawn on it), transcribe a WAV (segments, spectrogram, subtitles), speak,
and a bad upload that ends in a readable message with the page still working."""

from __future__ import annotations

import re

from tests.helpers.browser import needs_chromium, screenshot
from tests.helpers.media import slide
from tests.helpers.speech import needs_espeak, synth_wav

pytestmark = needs_chromium

SENTENCE = "Welcome to the studio. Today we will test the microphone."


def open_task(page, studio, name):
    page.goto(studio.url + "/studio/")
    page.get_by_role("tab", name="Tasks").click()
    page.locator("#tasks-tabs").get_by_role("tab", name=name, exact=True).click()


def value_of(page, selector):
    return page.locator(selector).input_value()


def wait_value(page, selector, pattern, timeout=60_000):
    from playwright.sync_api import expect

    expect(page.locator(selector)).to_have_value(re.compile(pattern, re.I), timeout=timeout)


def test_read_text_from_an_uploaded_picture_shows_the_text_and_its_boxes(page, studio, tmp_path):
    picture = tmp_path / "sign.png"
    slide("OPEN STUDIO", (40, 90, 160)).save(picture)
    open_task(page, studio, "Read text")
    page.locator("#tasks-read-image input[type=file]").set_input_files(str(picture))
    page.locator("#tasks-read-image img").wait_for()
    page.locator("#tasks-read-run").click()
    wait_value(page, "#tasks-read-text textarea", r"OPEN\s*STUDIO")
    boxes = page.locator("#tasks-read-boxes img")
    boxes.wait_for()
    assert boxes.evaluate("img => img.complete && img.naturalWidth") == 640  # the picture, boxes drawn on it
    page.locator("#tasks-read-lines").get_by_test_id("cell-0-1").get_by_text("OPEN STUDIO").wait_for()
    assert studio.client.registry.engine("rapidocr")  # what read it
    assert page.locator("#tasks-read-error").is_hidden()
    screenshot(page, "studio-tasks-read", tmp_path)


@needs_espeak
def test_transcribe_an_uploaded_wav_shows_transcript_segments_and_subtitles(page, studio, tmp_path):
    from tests.helpers.speech import wer

    wav = tmp_path / "welcome.wav"
    wav.write_bytes(synth_wav(SENTENCE))
    open_task(page, studio, "Transcribe")
    page.locator("#tasks-transcribe-audio input[type=file]").set_input_files(str(wav))
    page.locator("#tasks-transcribe-run").click()
    wait_value(page, "#tasks-transcribe-text textarea", r"microphone")
    assert wer(SENTENCE, value_of(page, "#tasks-transcribe-text textarea")) <= 0.35
    page.locator("#tasks-transcribe-picture img").wait_for()
    page.locator("#tasks-transcribe-segments").get_by_test_id("cell-0-0").get_by_text("0:00.00").wait_for()
    srt = page.locator("#tasks-transcribe-srt")
    srt.wait_for()
    with page.expect_download() as download:
        srt.click()
    body = download.value.path().read_text()
    assert download.value.suggested_filename == "welcome.srt"
    assert "-->" in body and "microphone" in body.lower()
    page.locator("#tasks-transcribe-vtt").wait_for()
    assert page.locator("#tasks-transcribe-error").is_hidden()
    screenshot(page, "studio-tasks-transcribe", tmp_path)


def test_speak_gives_an_audio_player_and_a_download(page, studio, tmp_path):
    open_task(page, studio, "Speak")
    page.locator("#tasks-speak-text textarea").fill("Good morning from the studio.")
    page.locator("#tasks-speak-run").click()
    page.locator("#tasks-speak-audio audio, #tasks-speak-audio [data-testid=waveform-Speech]").first.wait_for(
        state="attached")
    page.locator("#tasks-speak-download").wait_for()
    page.get_by_text(re.compile(r"s of speech in .* on piper")).wait_for()
    screenshot(page, "studio-tasks-speak", tmp_path)
    # espeak: its own voice list, and the voice chosen is the one used
    page.locator("#tasks-speak-engine").get_by_text("espeak", exact=True).click()
    voice = page.locator("#tasks-speak-voice input")
    page.wait_for_function("() => !document.querySelector('#tasks-speak-voice input').value.startsWith('joe')")
    voice.fill("German")
    page.get_by_role("option", name=re.compile(r"^German \(de")).click()
    page.locator("#tasks-speak-text textarea").fill("Guten Morgen.")
    page.locator("#tasks-speak-run").click()
    page.get_by_text(re.compile(r"s of speech in .* on espeak")).wait_for()
    row = studio.client.store.recent(1)[0]
    assert row["engine"] == "espeak" and "/de" in str(row["options"])  # the German voice, by identifier


@needs_espeak
def test_watch_a_video_shows_its_scenes_with_their_text_and_the_speech(page, studio, tmp_path):
    from playwright.sync_api import expect

    from tests.helpers.media import make_video
    from tests.helpers.speech import speech

    video = tmp_path / "talk.mp4"
    video.write_bytes(make_video([(1.5, slide("FIRST SLIDE", (180, 40, 40))), (1.5, slide("LAST SLIDE", (30, 120, 60)))],
                                 audio=speech("Welcome to the studio.")))
    open_task(page, studio, "Watch")
    page.locator("#tasks-watch-video input[type=file]").set_input_files(str(video))
    page.locator("#tasks-watch-video video").wait_for()
    page.locator("#tasks-watch-run").click()
    table = page.locator("#tasks-watch-table")
    expect(table).to_contain_text("LAST SLIDE", timeout=60_000)
    expect(table).to_contain_text("FIRST SLIDE")
    expect(table).to_contain_text(re.compile(r"welcome to the studio", re.I))  # the speech
    assert page.locator("#tasks-watch-scenes img").count() == 2
    page.locator("#tasks-watch-timeline img").wait_for()
    screenshot(page, "studio-tasks-watch", tmp_path)


@needs_espeak
def test_a_text_file_given_as_audio_is_a_readable_error_and_the_tab_still_works(page, studio, tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("these are meeting notes, not a recording\n")
    open_task(page, studio, "Transcribe")
    upload = page.locator("#tasks-transcribe-audio input[type=file]")
    upload.set_input_files(str(bad))
    page.locator("#tasks-transcribe-run").click()
    error = page.locator("#tasks-transcribe-error")
    error.get_by_text(re.compile("notes.wav is not audio")).wait_for()
    assert "upload WAV" in error.inner_text()
    # the same tab, a real recording: the error goes and the transcript comes
    good = tmp_path / "welcome.wav"
    good.write_bytes(synth_wav(SENTENCE))
    page.locator("#tasks-transcribe-audio button[aria-label='Clear']").click()
    page.locator("#tasks-transcribe-audio input[type=file]").set_input_files(str(good))
    page.locator("#tasks-transcribe-run").click()
    wait_value(page, "#tasks-transcribe-text textarea", r"microphone")
    error.wait_for(state="hidden")
    # image tasks say what they need when no engine here can do them
    page.locator("#tasks-tabs").get_by_role("tab", name="See", exact=True).click()
    page.locator("#tasks-see-note").get_by_text(re.compile("needs a vision model")).wait_for()
