"""`data:` URLs: media sent inline (an MCP client's image, a tool argument), decoded without any fetch."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote_to_bytes

from ..errors import InputError

__all__ = ["decode_data_url", "is_data_url"]


def is_data_url(ref: object) -> bool:
    return isinstance(ref, str) and ref[:5].lower() == "data:"


def decode_data_url(url: str, what: str = "data URL") -> bytes:
    """The bytes of `data:[<mime>][;base64],<data>`; a clear InputError naming `what` when malformed."""
    header, comma, body = url.partition(",")
    if not is_data_url(url) or not comma:
        raise InputError(f"{what}: a data: URL needs a comma before its data",
                         hint="write data:image/png;base64,<base64 bytes>")
    try:
        if header.lower().endswith(";base64"):
            return base64.b64decode(body, validate=True)
        return unquote_to_bytes(body)
    except (binascii.Error, ValueError):
        raise InputError(f"{what}: the data: URL is not valid base64") from None
