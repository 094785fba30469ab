"""The hf-speech engine on tiny random-weight models made here (Whisper and wav2vec2 for speech recognition,
VITS for speech synthesis), loaded through the engine's own code: shapes, timestamps, sampling rates,
seeded determinism, and the errors for models and inputs of the wrong kind."""

from __future__ import annotations

import io
import json
import shutil
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("transformers", reason="needs the hf extra: pip install -e '.[hf]'")

from imagine import Audio, Image, InputError, Message, Modality, OptionsError, TextDelta, get_registry  # noqa: E402
from imagine import tasks  # noqa: E402
from imagine.config import get_settings  # noqa: E402
from imagine.engine import Request, Response  # noqa: E402
from imagine.engines.hf.hf_speech import TransformersSpeechEngine  # noqa: E402
from imagine.parts import Segments  # noqa: E402

from ...helpers.media import png_bytes  # noqa: E402

TTS_RATE = 22050  # the tiny VITS's sampling rate: not the 16 kHz recognisers use, so a default would show



def _byte_alphabet() -> list[str]:
    """GPT-2's printable stand-ins for the 256 bytes: a byte-level BPE vocabulary with no merges."""
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    extra = [b for b in range(256) if b not in keep]
    return [chr(b) for b in keep] + [chr(256 + i) for i in range(len(extra))]


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer, 32-wide Whisper with a byte vocabulary, Whisper's special and timestamp tokens."""
    import torch
    from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration,
                              WhisperProcessor, WhisperTokenizer)

    folder = tmp_path_factory.mktemp("tiny-whisper")
    vocab = {c: i for i, c in enumerate(_byte_alphabet())}
    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|de|>", "<|translate|>", "<|transcribe|>",
                "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]
    for token in specials + [f"<|{i * 0.02:.2f}|>" for i in range(1501)]:
        vocab[token] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = WhisperTokenizer.from_pretrained(folder)
    tokenizer.add_special_tokens({"additional_special_tokens": specials[1:]})
    ids = {token: vocab[token] for token in specials}
    eot = ids["<|endoftext|>"]
    config = WhisperConfig(vocab_size=len(vocab), num_mel_bins=80, d_model=32, encoder_layers=1, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                           decoder_ffn_dim=64, max_source_positions=1500, max_target_positions=64,
                           pad_token_id=eot, bos_token_id=eot, eos_token_id=eot,
                           decoder_start_token_id=ids["<|startoftranscript|>"])
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"], eos_token_id=eot, pad_token_id=eot, bos_token_id=eot,
        no_timestamps_token_id=ids["<|notimestamps|>"], is_multilingual=True, max_initial_timestamp_index=50,
        lang_to_id={"<|en|>": ids["<|en|>"], "<|de|>": ids["<|de|>"]},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        prev_sot_token_id=ids["<|startofprev|>"], max_length=24)
    model.save_pretrained(folder)
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def wav2vec2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny wav2vec2 CTC model with a character vocabulary (| marks word boundaries)."""
    import torch
    from transformers import (Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC,
                              Wav2Vec2Processor)

    folder = tmp_path_factory.mktemp("tiny-wav2vec2")
    chars = ["<pad>", "<s>", "</s>", "<unk>", "|", *"ETAOINSHRDLU'"]
    (folder / "vocab.json").write_text(json.dumps({c: i for i, c in enumerate(chars)}))
    tokenizer = Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), word_delimiter_token="|")
    config = Wav2Vec2Config(vocab_size=len(chars), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=32, conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8),
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, pad_token_id=0,
                            do_stable_layer_norm=True, feat_extract_norm="layer")
    torch.manual_seed(0)
    Wav2Vec2ForCTC(config).save_pretrained(folder)
    extractor = Wav2Vec2FeatureExtractor(sampling_rate=16000, return_attention_mask=True)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def vits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny VITS (MMS-TTS style: characters in, no phonemizer) at 22,050 Hz."""
    import torch
    from transformers import VitsConfig, VitsModel, VitsTokenizer

    folder = tmp_path_factory.mktemp("tiny-vits")
    chars = ["<pad>", "<unk>", " ", *"abcdefghijklmnopqrstuvwxyz'"]
    (folder / "vocab.json").write_text(json.dumps({c: i for i, c in enumerate(chars)}))
    tokenizer = VitsTokenizer(vocab_file=str(folder / "vocab.json"), phonemize=False, add_blank=True, normalize=True)
    config = VitsConfig(vocab_size=len(chars), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, ffn_dim=32,
                        flow_size=16, spectrogram_bins=33, upsample_initial_channel=16, upsample_rates=[4, 4],
                        upsample_kernel_sizes=[8, 8], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
                        prior_encoder_num_flows=1, prior_encoder_num_wavenet_layers=1,
                        posterior_encoder_num_wavenet_layers=1, duration_predictor_num_flows=1,
                        duration_predictor_filter_channels=16, depth_separable_num_layers=1, sampling_rate=TTS_RATE)
    torch.manual_seed(0)
    VitsModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tone(seconds: float = 1.5, rate: int = 16000) -> Audio:
    t = np.arange(int(seconds * rate)) / rate
    return Audio.from_samples((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate, name="tone.wav")


def call(*parts: Any, model: Path | str, want: Modality, **options: Any) -> Response:
    engine = get_registry().engine("hf-speech")
    request = Request(messages=(Message.user(*parts),), model=str(model), options=engine.parse_options(options),
                      want=want, limits=get_settings().part_limits())
    return Response(engine, request).complete()


def wav_info(data: bytes) -> tuple[int, int]:
    """(sampling rate, frames) read back with the standard library."""
    with wave.open(io.BytesIO(data)) as wav:
        return wav.getframerate(), wav.getnframes()


# -- speech recognition --------------------------------------------------------------------------------

def test_whisper_transcribes_with_timestamps_deterministically(whisper_dir: Path) -> None:
    response = call(tone(), model=whisper_dir, want=Modality.TEXT, max_tokens=8)
    text = response.text()
    assert isinstance(text, str) and text == text.strip()
    kinds = [type(e).__name__ for e in response.events()]
    assert kinds[-3:] == ["PartOut", "Usage", "Done"] and kinds.count("TextDelta") <= 1
    (segments,) = response.parts
    assert isinstance(segments, Segments)
    assert all(0 <= s.start <= s.end <= 1.5 for s in segments.items)
    assert response.usage.extra["audio_seconds"] == pytest.approx(1.5) and response.usage.cost == 0.0
    again = call(tone(), model=whisper_dir, want=Modality.TEXT, max_tokens=8)
    assert again.text() == text and again.parts == response.parts  # greedy decoding: the same every time


def test_audio_is_resampled_to_the_feature_extractors_rate(whisper_dir: Path) -> None:
    response = call(tone(2.0, rate=8000), model=whisper_dir, want=Modality.TEXT, max_tokens=4, timestamps=False)
    assert response.usage.extra["audio_seconds"] == pytest.approx(2.0)
    (segments,) = response.parts
    assert [(s.start, s.end) for s in segments.items] in ([], [(0.0, 2.0)])  # one span when there is text


def test_whisper_language_and_task(whisper_dir: Path) -> None:
    german = call(tone(), model=whisper_dir, want=Modality.TEXT, max_new_tokens=4, language="de", task="translate")
    assert isinstance(german.text(), str)
    with pytest.raises(InputError, match="xx"):
        call(tone(), model=whisper_dir, want=Modality.TEXT, max_new_tokens=4, language="xx")
    with pytest.raises(OptionsError, match="task"):
        TransformersSpeechEngine.parse_options({"task": "summarise"})
    with pytest.raises(InputError, match="alignment_heads"):  # word times need the model's alignment heads
        call(tone(), model=whisper_dir, want=Modality.TEXT, max_new_tokens=4, word_timestamps=True)


def test_ctc_model_gives_word_segments(wav2vec2_dir: Path) -> None:
    response = call(tone(), model=wav2vec2_dir, want=Modality.TEXT)
    text = response.text()
    (segments,) = response.parts
    assert isinstance(segments, Segments)
    assert [s.text for s in segments.items] == text.split()
    assert all(0 <= s.start <= s.end <= 1.5 for s in segments.items)
    assert call(tone(), model=wav2vec2_dir, want=Modality.TEXT).text() == text
    with pytest.raises(InputError, match="for Whisper models"):
        call(tone(), model=wav2vec2_dir, want=Modality.TEXT, language="en")


def test_transcribe_task_through_the_registry(whisper_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    path.write_bytes(tone().data)
    response = tasks.transcribe(path, f"hf-speech:{whisper_dir}", max_new_tokens=4)
    assert isinstance(response.text(), str) and response.provenance["engine"] == "hf-speech"


# -- speech synthesis ------------------------------------------------------------------------------------

def test_vits_speaks_a_wav_at_the_models_rate(vits_dir: Path) -> None:
    import torch

    call("warm up", model=vits_dir, want=Modality.AUDIO)  # loading itself may draw from torch's generator
    state = torch.get_rng_state()
    response = call("hello world", model=vits_dir, want=Modality.AUDIO, seed=7)
    assert torch.equal(torch.get_rng_state(), state)  # seeding a run leaves the caller's generator alone
    (audio,) = response.parts
    assert isinstance(audio, Audio) and audio.mime == "audio/wav"
    rate, frames = wav_info(audio.data)
    assert rate == TTS_RATE and frames > 0
    samples, decoded_rate = audio.samples(rate=None)
    assert decoded_rate == TTS_RATE and len(samples) == frames
    assert response.usage.extra["seed"] == 7 and response.usage.extra["seconds"] == pytest.approx(frames / rate, abs=1e-3)
    assert not any(isinstance(e, TextDelta) for e in response.events())


def test_same_seed_same_audio(vits_dir: Path) -> None:
    first = call("a seeded sentence", model=vits_dir, want=Modality.AUDIO, seed=1).parts[0]
    second = call("a seeded sentence", model=vits_dir, want=Modality.AUDIO, seed=1).parts[0]
    other = call("a seeded sentence", model=vits_dir, want=Modality.AUDIO, seed=2).parts[0]
    assert first == second and first != other


def test_speak_task_through_the_registry(vits_dir: Path) -> None:
    response = tasks.speak("good morning", f"hf-speech:{vits_dir}", seed=3)
    assert wav_info(response.parts[0].data)[0] == TTS_RATE


# -- models and inputs of the wrong kind -----------------------------------------------------------------

def test_a_model_of_the_wrong_kind_for_the_task(whisper_dir: Path, vits_dir: Path) -> None:
    with pytest.raises(InputError, match="text-to-speech model, so it cannot transcribe"):
        call(tone(), model=vits_dir, want=Modality.TEXT)
    with pytest.raises(InputError, match="speech recognition model, so it cannot speak"):
        tasks.speak("hello", f"hf-speech:{whisper_dir}").complete()


def test_a_text_model_is_not_a_speech_model(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(InputError, match="GPT2LMHeadModel model, not a speech recognition or text-to-speech"):
        tasks.transcribe(tone(), f"hf-speech:{tmp_path}")


def test_an_image_is_refused(whisper_dir: Path) -> None:
    picture = Image(png_bytes())
    with pytest.raises(InputError, match="does not take image input"):
        tasks.respond([Message.user(picture)], f"hf-speech:{whisper_dir}", want=Modality.TEXT)
    with pytest.raises(InputError, match="not image"):
        call(picture, model=whisper_dir, want=Modality.TEXT)
    with pytest.raises(InputError, match="transcribe needs audio or video"):
        tasks.transcribe(picture, f"hf-speech:{whisper_dir}")


def test_transcription_needs_one_audio_part_and_speech_needs_text(whisper_dir: Path, vits_dir: Path) -> None:
    with pytest.raises(InputError, match="one audio or video part, got 2"):
        call(tone(), tone(1.0), model=whisper_dir, want=Modality.TEXT)
    with pytest.raises(InputError, match="takes text, but the request holds audio"):
        call(tone(), model=vits_dir, want=Modality.AUDIO)


def test_a_folder_that_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no model here")
    with pytest.raises(InputError, match="not a Hugging Face model"):
        tasks.transcribe(tone(), f"hf-speech:{tmp_path}")


def test_pickle_only_weights_need_allow_pickle(vits_dir: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "pickled-vits"
    shutil.copytree(vits_dir, folder)
    torch.save(load_file(str(folder / "model.safetensors")), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(InputError, match="only pickle weights"):
        call("hello", model=folder, want=Modality.AUDIO, seed=1)
    pickled = call("hello", model=folder, want=Modality.AUDIO, seed=1, allow_pickle=True).parts[0]
    assert pickled == call("hello", model=vits_dir, want=Modality.AUDIO, seed=1).parts[0]


def test_no_default_model_and_hub_ids_need_a_download() -> None:
    with pytest.raises(InputError, match="has no default model") as caught:
        get_registry().resolve("hf-speech", inputs={Modality.AUDIO}, want=Modality.TEXT)
    assert "openai/whisper-tiny" in str(caught.value)
    from imagine import EngineUnavailable

    with pytest.raises(EngineUnavailable, match="must be downloaded first"):
        tasks.transcribe(tone(), "hf-speech:openai/whisper-tiny")



def test_cli_transcribes_with_an_hf_model(whisper_dir: Path, tmp_path: Path, imagine_home: Path) -> None:
    from ...helpers.cli import run

    wav = tmp_path / "tone.wav"
    wav.write_bytes(tone().data)
    proc = run("transcribe", str(wav), "-m", f"hf-speech:{whisper_dir}", "-o", "max_new_tokens=4", "--format", "json",
               home=imagine_home)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert isinstance(data["text"], str) and isinstance(data["segments"], list)
    assert data["model"] == f"hf-speech:{whisper_dir}"
