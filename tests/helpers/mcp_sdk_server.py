"""An MCP server written with the official SDK alone (`MCPServer`, once `FastMCP`), run as a script over
stdio: the far end imagine's MCP client is tested against. It imports nothing of imagine."""

from __future__ import annotations

import io
import sys

from mcp.server.mcpserver import Audio, Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

server = MCPServer("sdk-test-server")


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def add(a: int, b: int) -> str:
    """Add two whole numbers."""
    return str(a + b)


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def square(colour: str = "red", size: int = 32) -> Image:
    """A square PNG of one colour."""
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return Image(data=buffer.getvalue(), format="png")


@server.tool()
def beep(seconds: float = 0.2) -> Audio:
    """A 440 Hz tone as a WAV file."""
    import wave

    import numpy as np

    rate = 8000
    t = np.arange(int(rate * seconds)) / rate
    samples = (np.sin(2 * np.pi * 440 * t) * 0.3 * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return Audio(data=buffer.getvalue(), format="wav")


@server.tool()
def explode(reason: str) -> str:
    """Always fails, saying why (a ToolError's message reaches the client)."""
    raise ToolError(f"exploded: {reason}")


if __name__ == "__main__":
    print("sdk-test-server starting", file=sys.stderr)
    server.run("stdio")
