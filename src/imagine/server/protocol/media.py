"""Wire models of the media endpoints: embeddings, audio (transcriptions, translations, speech) and images
(generations, edits), as OpenAI's API defines them.

Request bodies are strict where a typo would silently change the answer (`extra="forbid"` would break
SDKs that send newer fields, so unknown fields are allowed but ignored, as OpenAI does); every field an
engine cannot honour is refused later, in serving, naming the field. Multipart endpoints (transcriptions,
edits) are parsed by hand in the routes, since their fields arrive as form strings."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["EmbeddingRequest", "EmbeddingResponse", "Embedding", "EmbeddingUsage", "ImageData", "ImageRequest",
           "ImagesResponse", "SpeechRequest", "TRANSCRIPT_FORMATS", "Transcription", "TranscriptionSegment",
           "TranscriptionWord", "VerboseTranscription"]

TRANSCRIPT_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")

    # imagine's own extras, as in chat: a routing policy, a cost cap, engine options
    policy: str | None = Field(default=None, description="imagine: a routing policy such as local_only")
    max_cost: float | None = Field(default=None, ge=0, description="imagine: the most this request may cost")
    options: dict[str, Any] | None = Field(default=None, description="imagine: engine options, validated by "
                                                                     "the engine")


# -- embeddings ------------------------------------------------------------------------------------

class EmbeddingRequest(_Body):
    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="a text, a list of texts (or image data URLs for an engine that embeds images)")
    model: str = Field(default="auto", description="ENGINE:MODEL, an alias, or an OpenAI name "
                                                   "(text-embedding-*: the default embedder)")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


# -- audio ----------------------------------------------------------------------------------------

class TranscriptionWord(BaseModel):
    word: str
    start: float
    end: float


class TranscriptionSegment(BaseModel):
    id: int
    seek: int = 0
    start: float
    end: float
    text: str
    tokens: list[int] = Field(default_factory=list)
    temperature: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0


class Transcription(BaseModel):
    text: str


class VerboseTranscription(BaseModel):
    task: Literal["transcribe", "translate"]
    language: str
    duration: float
    text: str
    segments: list[TranscriptionSegment] | None = None
    words: list[TranscriptionWord] | None = None


class SpeechRequest(_Body):
    input: str = Field(min_length=1, description="the text to speak")
    model: str = Field(default="auto", description="ENGINE:MODEL, an alias, or tts-1 / tts-1-hd (the default "
                                                   "voice engine)")
    voice: str | dict[str, Any] | None = Field(default=None, description="an engine voice (piper: joe or a voice "
                                               "file; espeak: en-us, de, ...); OpenAI's names use the default")
    response_format: Literal["wav", "mp3", "opus", "aac", "flac", "pcm"] = "mp3"
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    instructions: str | None = None
    stream_format: Literal["audio", "sse"] | None = None


# -- images ---------------------------------------------------------------------------------------

class ImageRequest(_Body):
    prompt: str = Field(min_length=1)
    model: str = Field(default="auto", description="ENGINE:MODEL (diffusers:FOLDER_OR_REPO) or an alias")
    n: int = Field(default=1, ge=1)
    size: str | None = Field(default=None, description="WIDTHxHEIGHT, or auto")
    response_format: Literal["url", "b64_json"] | None = None
    output_format: Literal["png", "jpeg", "webp"] | None = None
    quality: str | None = None
    style: str | None = None
    background: str | None = None
    moderation: str | None = None
    output_compression: int | None = None
    user: str | None = None
    seed: int | None = Field(default=None, ge=0, description="imagine: same seed, same images")
    steps: int | None = Field(default=None, ge=1, description="imagine: denoising steps")
    negative_prompt: str | None = Field(default=None, description="imagine: what the image should not show")


class ImageData(BaseModel):
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class ImagesResponse(BaseModel):
    created: int
    data: list[ImageData]
    output_format: str | None = None
    size: str | None = None
