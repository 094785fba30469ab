"""Talk to a model: the realtime voice loop (VAD -> STT -> LLM -> TTS, with barge-in) and its pieces.

Transports sit above: the Realtime API WebSocket in `imagine.server`, `imagine talk` in the CLI."""

from .events import Item
from .session import DEFAULT_INSTRUCTIONS, SessionConfig, VoiceSession
from .turns import TurnSettings

__all__ = ["DEFAULT_INSTRUCTIONS", "Item", "SessionConfig", "TurnSettings", "VoiceSession"]
