"""`POST /v1/audio/transcriptions`, `/v1/audio/translations` (multipart uploads) and `/v1/audio/speech`.

The multipart form is read through FastAPI's Form/File parameters, so a missing `file` is the same 400
naming the field as any other validation error; the Guard has already capped the whole body."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from ..deps import Caller, caller
from ..protocol.common import ERRORS
from ..protocol.media import SpeechRequest, Transcription, VerboseTranscription
from ..serving.audio import Transcribe, speak, transcribe
from ..serving.speech_stream import stream_speech, streams

router = APIRouter(tags=["audio"])

_TEXT: dict[str, Any] = {"content": {"application/json": {}, "text/plain": {}, "application/x-subrip": {}, "text/vtt": {}}}


async def _run(task: str, file: UploadFile, model: str, language: str | None, prompt: str | None,
               response_format: str, temperature: float | None, granularities: list[str] | None,
               who: Caller, http: Request) -> Any:
    request = Transcribe(data=await file.read(), filename=file.filename, model=model, task=task,
                         language=language or None, prompt=prompt or None, response_format=response_format,
                         temperature=temperature, granularities=tuple(granularities or ()))
    body, media_type, headers = await transcribe(request, who, http)
    if isinstance(body, dict):
        return JSONResponse(body, headers=headers)
    return PlainTextResponse(body, media_type=media_type, headers=headers)


@router.post("/v1/audio/transcriptions", response_model=Transcription | VerboseTranscription,
             responses={**ERRORS, 200: _TEXT})
async def transcriptions(
        http: Request,
        file: Annotated[UploadFile, File(description="the audio (or video) to transcribe")],
        model: Annotated[str, Form(description="whisper-1 (the default transcriber), ENGINE:MODEL or an alias")] = "auto",
        language: Annotated[str | None, Form()] = None,
        prompt: Annotated[str | None, Form()] = None,
        response_format: Annotated[str, Form()] = "json",
        temperature: Annotated[float | None, Form(ge=0, le=1)] = None,
        timestamp_granularities: Annotated[list[str] | None, Form(alias="timestamp_granularities[]")] = None,
        who: Caller = Depends(caller)) -> Any:
    return await _run("transcribe", file, model, language, prompt, response_format, temperature,
                      timestamp_granularities, who, http)


@router.post("/v1/audio/translations", response_model=Transcription | VerboseTranscription,
             responses={**ERRORS, 200: _TEXT})
async def translations(
        http: Request,
        file: Annotated[UploadFile, File(description="speech in any language, to be written in English")],
        model: Annotated[str, Form(description="whisper-1 (the default transcriber), ENGINE:MODEL or an alias")] = "auto",
        prompt: Annotated[str | None, Form()] = None,
        response_format: Annotated[str, Form()] = "json",
        temperature: Annotated[float | None, Form(ge=0, le=1)] = None,
        who: Caller = Depends(caller)) -> Any:
    return await _run("translate", file, model, None, prompt, response_format, temperature, None, who, http)


@router.post("/v1/audio/speech", response_class=Response,
             responses={**ERRORS, 200: {"content": {"audio/mpeg": {}, "audio/wav": {}, "audio/ogg": {},
                                                  "audio/pcm": {}, "text/event-stream": {}}}})
async def speech(body: SpeechRequest, http: Request, who: Caller = Depends(caller)) -> Response:
    if streams(body):  # stream_format, or pcm/wav: the audio as it is made (serving/speech_stream.py)
        return await stream_speech(body, who, http)
    data, media_type, headers = await speak(body, who, http)
    return Response(data, media_type=media_type, headers=headers)
