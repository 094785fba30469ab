"""`imagine chat`: an interactive session over the same `ask` path.

History stays in memory (and every turn is logged under one conversation id, so `imagine ask -c`
can pick it up later). Ctrl-C while a reply streams stops that reply and keeps what arrived;
Ctrl-C at the prompt clears the line; Ctrl-D or !quit leaves.
"""

from __future__ import annotations

import shlex
import sys
from typing import Any, Callable, TextIO

from .engine import new_id
from .errors import ImagineError
from .parts import Message, Part, load_part

__all__ = ["ChatSession"]

HELP = """commands:
  !attach FILE   attach a file to your next message
  !model ID      switch model (ENGINE:MODEL or alias)
  !policy P      route with a policy (local_only, cheapest, cascade...; "off" to stop)
  !new           start a new conversation
  !help          this help
  !quit          leave (or Ctrl-D)
Ctrl-C stops a reply without leaving."""


class ChatSession:
    """A read-eval-print loop; `read` and `out` are injectable so tests can drive it."""

    def __init__(self, model: str | None = None, options: dict[str, Any] | None = None,
                 system: str | None = None, read: Callable[[str], str] = input, out: TextIO | None = None,
                 policy: str | None = None, memory: bool = False) -> None:
        self.model = model
        self.options = options or {}
        self.system = system
        self.policy = policy
        self.read = read
        self.out = out or sys.stdout
        self.history: list[Message] = []
        self.pending: list[Part] = []
        self.conversation_id = new_id()
        self.memory: Any = None
        if memory:
            from .index.memory import Memory

            self.memory = Memory()

    def say(self, text: str, end: str = "\n") -> None:
        self.out.write(text + end)
        self.out.flush()

    def run(self) -> None:
        try:
            import readline  # noqa: F401  (line editing and history where available)
        except ImportError:
            pass
        self.say(f"imagine chat · model {self.model or 'default'} · !help for commands, Ctrl-D to leave")
        while True:
            try:
                line = self.read("> " if not self.pending else f"> [{len(self.pending)} attached] ")
            except EOFError:
                self.say("")
                return
            except KeyboardInterrupt:
                self.say("")
                continue
            line = line.strip()
            if not line:
                continue
            if line.startswith("!"):
                if self.command(line) == "quit":
                    return
                continue
            self.turn(line)

    def command(self, line: str) -> str | None:
        try:
            words = shlex.split(line[1:])
        except ValueError as exc:
            self.say(f"error: {exc}")
            return None
        name, args = (words[0].lower(), words[1:]) if words else ("", [])
        if name in ("quit", "exit", "q"):
            return "quit"
        if name == "help":
            self.say(HELP)
        elif name == "attach" and args:
            for path in args:
                try:
                    self.pending.append(load_part(path))
                    self.say(f"attached {path}")
                except ImagineError as exc:
                    self.say(f"error: {exc}")
        elif name == "model" and args:
            self.model = args[0]
            self.say(f"model: {self.model}")
        elif name == "policy" and args:
            if "local_only" in (self.policy or "") and "local_only" not in args[0]:
                self.say("this conversation is local_only and stays so; !new starts another")
            else:
                self.policy = None if args[0] == "off" else args[0]
                self.say(f"policy: {self.policy or 'none'}")
        elif name in ("new", "reset"):
            self.history, self.pending, self.conversation_id = [], [], new_id()
            self.policy = None if "local_only" in (self.policy or "") else self.policy
            self.say("new conversation")
        else:
            self.say(f"unknown command {line!r}; !help lists them")
        return None

    def turn(self, text: str) -> None:
        from .tasks import ask

        system = self.system if not self.history else None
        recalled, recall_text = self._recall(text)
        if recall_text:
            system = f"{system}\n\n{recall_text}" if system else recall_text
        try:
            response = ask(text, self.model, attach=list(self.pending), system=system, options=self.options,
                           history=self.history, conversation_id=self.conversation_id, policy=self.policy)
        except ImagineError as exc:
            self.say(f"error: {exc}")
            return
        self.pending = []
        try:
            for delta in response:
                self.say(delta, end="")
        except KeyboardInterrupt:
            self.say(" [stopped]", end="")
        except ImagineError as exc:
            self.say(f"\nerror: {exc}", end="")
        self.say("")
        new = list(response.request.messages[len(self.history):])
        if recall_text:  # recalled memories help this turn only; the first turn keeps its own system prompt
            new = [Message.system(self.system) if m.role == "system" and self.system else m for m in new
                   if m.role != "system" or self.system]
        self.history.extend(new)
        reply = response.text_so_far()
        if reply:
            self.history.append(Message.assistant(reply))
        if self.memory is not None and reply:
            from .index.memory import remember_response

            if recalled:
                self.say("  (memories used: " + ", ".join(f"[{r.label}] {r.chunk.meta.get('summary') or r.chunk.text}"
                                                         for r in recalled) + ")")
            try:
                remember_response(self.memory, text, response, self.model)
            except ImagineError as exc:
                self.say(f"(not remembered: {exc})")

    def _recall(self, text: str) -> tuple[list[Any], str]:
        if self.memory is None:
            return [], ""
        from .index.memory import context

        try:
            recalled = self.memory.recall(text)
        except ImagineError as exc:
            self.say(f"(memory unavailable: {exc})")
            return [], ""
        return recalled, context(recalled) if recalled else ""
