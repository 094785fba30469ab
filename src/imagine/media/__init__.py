"""Media: decoding and encoding (decode.py, through PyAV), the limits on what decoding may cost
(limits.py), and recognising a file from its bytes (sniff.py). The parts (`imagine.parts`) call into
these; engines read decoded samples and frames through the parts, never from here directly."""

from __future__ import annotations

from .decode import (VideoInfo, check_wav_complete, decode_audio, encode_wav, iter_audio, iter_frames,
                     video_info)
from .limits import DEFAULT_LIMITS, Limits
from .sniff import sniff_mime

__all__ = ["DEFAULT_LIMITS", "Limits", "VideoInfo", "check_wav_complete", "decode_audio", "encode_wav", "iter_audio",
           "iter_frames", "sniff_mime", "video_info"]
