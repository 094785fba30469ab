"""Compare: the same input to 2-4 models at once, answers side by side, and a vote for the best.

Each model runs concurrently through the Client (so each answer is logged like any call) and streams into
its own column with its latency, tokens/s, cost and who answered. A model that fails shows why in its
column while the others finish. The person then names a winner (or a tie) once per compare; the vote is
stored in the log beside the answers' log ids, and the task's Elo leaderboard below is recomputed from it.
Tasks: `ask` (text reply, an optional image goes along), `speak` (voices side by side) and `read_text` (OCR).
"""

from __future__ import annotations

import asyncio
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

from ..errors import ImagineError, InputError
from ..parts import Message, Modality
from .app import StudioContext
from .chat import media_file, turn_parts

__all__ = ["Slot", "build", "chosen_models", "leaderboard_rows"]

SLOTS, LETTERS = 4, "ABCD"
TASKS = [("Ask: text reply", "ask"), ("Speak: text to speech", "speak"), ("Read text: OCR", "read_text")]
HEADERS = ["model", "Elo", "wins", "losses", "ties", "votes"]
_IMAGE_LABEL = {"ask": "Image (optional: goes along with the prompt)", "speak": "", "read_text": "Image to read"}


def _error(message: str) -> str:
    return f'<span class="imagine-error">⚠ {html.escape(message)}</span>'


@dataclass
class Slot:
    """One column of a compare: what was asked of which model, and what came back."""

    chosen: str
    text: str = ""
    audio: str | None = None
    meta: str = "answering…"
    error: str | None = None
    ref: str | None = None  # ENGINE:MODEL that answered: what the vote and leaderboard name
    log_id: str | None = None
    done: bool = False

    def finish(self, response: Any) -> None:
        """Fill the meta line from a finished Response: latency, tokens/s, cost, who answered."""
        usage, latency = response.usage, response.latency_s or 0.0
        self.ref, self.log_id = response.answered_ref, response.id
        bits = [f"{latency:.2f} s"]
        if usage.output_tokens and latency:
            bits.append(f"{usage.output_tokens / latency:,.1f} tok/s")
        if usage.extra.get("seconds"):
            bits.append(f"{usage.extra['seconds']:.1f} s of audio")
        bits.append("cost n/a" if usage.cost is None else "$0" if usage.cost == 0 else f"${usage.cost:.4f}")
        bits.append(f"answered by `{self.ref}`")
        self.meta = " · ".join(bits)


def chosen_models(values: list[str | None]) -> list[str]:
    """The 2-4 distinct models picked; fewer, or the same one twice, is an InputError saying what to do."""
    models = [v.strip() for v in values if v and v.strip()]
    if len(models) < 2:
        raise InputError("a compare needs at least two models",
                         hint="pick or type a second one, e.g. mock:other or llama-cpp")
    if len(set(models)) != len(models):
        raise InputError("the same model is chosen twice", hint="pick different models")
    return models


def leaderboard_rows(client: Any, task: str) -> list[list[Any]]:
    """The task's Elo leaderboard as Dataframe rows, best first."""
    return [[r.model, r.elo, r.wins, r.losses, r.ties, r.votes] for r in client.votes().leaderboard(task)]


def _choices(ctx: StudioContext, task: str) -> list[str]:
    if task == "speak":
        return ctx.models(Modality.AUDIO)
    if task == "read_text":
        return [m for m in ctx.models(Modality.TEXT, (Modality.IMAGE,)) if m not in ("auto", "local")]
    return ctx.models()


def _defaults(choices: list[str]) -> list[str | None]:
    """Prefill with the first two concrete models (not the router's aliases) there are."""
    concrete = [c for c in choices if c not in ("auto", "local", "cloud")]
    return (concrete[:2] + [None] * SLOTS)[:SLOTS]


def _start(client: Any, task: str, model: str, prompt: str, image: str | None) -> Any:
    """The Response for one model; raises an ImagineError when it cannot even start (an unknown model)."""
    if task == "speak":
        return client.speak(prompt, model)
    if task == "read_text":
        return client.read_text(image, model)
    parts = turn_parts(prompt, [image] if image else [], client.settings.part_limits())
    return client.respond([Message.user(*parts)], model, want=Modality.TEXT)


def _check_input(task: str, prompt: str, image: str | None) -> None:
    if task == "read_text" and not image:
        raise InputError("read_text needs an image", hint="upload a picture with text in it")
    if task == "speak" and not prompt.strip():
        raise InputError("nothing to speak", hint="type the text the voices should read")
    if task == "ask" and not prompt.strip() and not image:
        raise InputError("nothing to ask", hint="type a prompt (an image is optional)")


async def _run_one(client: Any, slot: Slot, task: str, prompt: str, image: str | None,
                   changed: asyncio.Queue[int], index: int) -> None:
    """Stream one model's answer into its slot; a failure stays in the slot and never reaches the others."""
    try:
        response = _start(client, task, slot.chosen, prompt, image)
        async for delta in response:
            slot.text += delta
            changed.put_nowait(index)
        await response
        slot.finish(response)
        if task == "speak" and response.parts:
            slot.audio = media_file(response.parts[0])
    except ImagineError as exc:
        slot.error, slot.meta = str(exc), f"failed · `{slot.chosen}`"
    except Exception as exc:  # an engine bug: shown in its column, the compare goes on
        slot.error, slot.meta = f"{type(exc).__name__}: {exc}", f"failed · `{slot.chosen}`"
    finally:
        slot.done = True
        changed.put_nowait(index)


def build(ctx: StudioContext) -> None:
    import gradio as gr

    client = ctx.client
    first = _choices(ctx, "ask")
    gr.Markdown("Give the same input to 2–4 models, see the answers side by side, then vote for the best: "
                "votes go into the log and make each task's Elo leaderboard.", elem_classes="imagine-meta")
    with gr.Row(equal_height=True):
        with gr.Column(scale=3):
            task = gr.Radio(TASKS, value="ask", label="Task", elem_id="compare-task")
            prompt = gr.Textbox(label="Prompt", lines=4, placeholder="The same prompt goes to every model",
                                elem_id="compare-prompt")
        image = gr.Image(type="filepath", label=_IMAGE_LABEL["ask"], sources=["upload", "clipboard"], height=190,
                         scale=1, elem_id="compare-image")
    with gr.Row():
        pickers = [gr.Dropdown(first, value=v, label=f"Model {letter}", allow_custom_value=True,
                               elem_id=f"compare-model-{letter.lower()}",
                               info="ENGINE:MODEL or a policy" if i < 2 else "optional")
                   for i, (letter, v) in enumerate(zip(LETTERS, _defaults(first)))]
    go = gr.Button("Compare", variant="primary", elem_id="compare-run")
    status = gr.Markdown("", elem_id="compare-status")
    columns, heads, outputs, audios, metas, buttons = [], [], [], [], [], []
    with gr.Row():
        for letter in LETTERS:
            with gr.Column(visible=False, variant="panel", min_width=220) as column:
                heads.append(gr.Markdown(f"**{letter}**", elem_id=f"compare-head-{letter.lower()}"))
                outputs.append(gr.Markdown("", container=True, min_height=140, max_height=420,
                                           elem_id=f"compare-out-{letter.lower()}"))
                audios.append(gr.Audio(type="filepath", interactive=False, visible=False, show_label=False,
                                       elem_id=f"compare-audio-{letter.lower()}"))
                metas.append(gr.Markdown("", elem_classes="imagine-meta", elem_id=f"compare-meta-{letter.lower()}"))
                buttons.append(gr.Button(f"★ {letter} is best", interactive=False, size="sm",
                                         elem_id=f"compare-vote-{letter.lower()}"))
            columns.append(column)
    tie = gr.Button("Tie: no winner", interactive=False, size="sm", visible=False, elem_id="compare-tie")
    board = gr.Dataframe(value=lambda: leaderboard_rows(client, "ask"), headers=HEADERS, interactive=False,
                         label="Leaderboard · ask (Elo from 1000, K=32)", elem_id="compare-leaderboard")
    state = gr.State({})  # the finished compare waiting for its vote: task, prompt, candidates
    slot_outputs = [c for i in range(SLOTS) for c in (columns[i], heads[i], outputs[i], audios[i], metas[i], buttons[i])]

    def render(slots: list[Slot], task_name: str, note: str, vote_open: bool) -> list[Any]:
        shown: list[Any] = [note]
        for i in range(SLOTS):
            slot = slots[i] if i < len(slots) else None
            if slot is None:
                shown += [gr.update(visible=False), gr.update(), gr.update(), gr.update(visible=False), gr.update(),
                          gr.update(interactive=False)]
                continue
            body = (slot.text + ("\n\n" if slot.text else "") + _error(slot.error)) if slot.error else slot.text
            shown += [gr.update(visible=True), f"**{LETTERS[i]}** · `{slot.chosen}`",
                      gr.update(value=body, visible=task_name != "speak" or bool(body)),
                      gr.update(value=slot.audio, visible=task_name == "speak" and slot.audio is not None),
                      slot.meta,
                      gr.update(value=f"★ {LETTERS[i]} is best", variant="secondary",
                                interactive=vote_open and slot.ref is not None and slot.error is None)]
        return [*shown, gr.update(visible=bool(slots), interactive=vote_open)]

    async def run(task_name: str, text: str, picture: str | None, *rest: Any) -> AsyncIterator[list[Any]]:
        text = text or ""
        try:
            models = chosen_models(list(rest[:SLOTS]))
            _check_input(task_name, text, picture)
        except ImagineError as exc:  # nothing ran: the previous compare (and its vote) stays as it was
            yield [_error(str(exc)), *[gr.update()] * (len(slot_outputs) + 1), gr.update()]
            return
        slots = [Slot(m) for m in models]
        changed: asyncio.Queue[int] = asyncio.Queue()
        yield [*render(slots, task_name, f"Asking {len(slots)} models…", False), {}]
        runs = [asyncio.create_task(_run_one(client, s, task_name, text, picture, changed, i))
                for i, s in enumerate(slots)]
        try:
            while not all(s.done for s in slots):
                await changed.get()
                while not changed.empty():  # coalesce a burst of deltas into one update
                    changed.get_nowait()
                yield [*render(slots, task_name, f"Asking {len(slots)} models…", False), {}]
        finally:
            for r in runs:
                r.cancel()
        answered = [(s.ref, s.log_id) for s in slots if s.ref and not s.error]
        ctx.remember(task=task_name, models=models, prompt=text,
                     attachments=[Path(picture).name] if picture else [])
        refs = [ref for ref, _ in answered]
        if len(answered) < 2:
            note = "Fewer than two models answered, so there is nothing to vote on."
        elif len(set(refs)) < len(refs):
            note = "Two columns were answered by the same model, so there is nothing to vote on."
        else:
            note = "Done. Which answer is best? Your vote goes into the leaderboard below."
            vote = {"task": task_name, "prompt": text, "candidates": answered, "letters": [
                LETTERS[i] for i, s in enumerate(slots) if s.ref and not s.error]}
            yield [*render(slots, task_name, note, True), vote]
            return
        yield [*render(slots, task_name, note, False), {}]

    def record(st: dict[str, Any], index: int | None) -> list[Any]:
        """Store the vote (`index` None: a tie), close voting for this compare, refresh the leaderboard."""
        closed = [gr.update(interactive=False)] * (SLOTS + 1)
        if not st:
            return [_error("this compare was already voted on; run another to vote again"), *closed, st,
                    gr.update()]
        if index is not None:
            closed[index] = gr.update(interactive=False, value="★ Winner", variant="primary")
        by_letter = dict(zip(st["letters"], [ref for ref, _ in st["candidates"]]))
        winner = None if index is None else by_letter.get(LETTERS[index])
        try:
            client.votes().record(st["task"], st["prompt"], [tuple(c) for c in st["candidates"]], winner)
        except ImagineError as exc:
            return [_error(str(exc)), *[gr.update()] * (SLOTS + 1), st, gr.update()]
        said = f"**{winner}** wins" if winner else "a tie"
        return [f"✓ Vote recorded: {said}. The {st['task']} leaderboard is updated.", *closed, {},
                leaderboard_rows(client, st["task"])]

    def switch(task_name: str) -> list[Any]:
        """Offer the models that can do the task and show its leaderboard."""
        choices = _choices(ctx, task_name)
        picks = [gr.update(choices=choices, value=v) for v in _defaults(choices)]
        return [*picks, gr.update(label=_IMAGE_LABEL[task_name], visible=task_name != "speak"),
                gr.update(value=leaderboard_rows(client, task_name),
                          label=f"Leaderboard · {task_name} (Elo from 1000, K=32)")]

    go.click(run, [task, prompt, image, *pickers], [status, *slot_outputs, tie, state],
             concurrency_limit=None, show_progress="minimal")

    def voter(index: int | None) -> Any:
        return lambda st: record(st, index)

    for i, button in enumerate([*buttons, tie]):
        button.click(voter(i if i < SLOTS else None), state, [status, *buttons, tie, state, board])
    task.change(switch, task, [*pickers, image, board])
