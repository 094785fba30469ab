"""Votes: which of several answers to the same input a person preferred, and the Elo ratings they make.

The studio's compare page asks 2-4 models the same thing and lets the person pick a winner (or call it a
tie); each vote is a row in the log beside the responses it judged (their log ids), so a leaderboard is
always recomputed from what was actually voted. Ratings are Elo from 1000 with K=32, replayed in vote
order: a multi-way vote counts as the winner beating each other candidate, a tie as draws between all.

    from imagine import Client
    client = Client()
    client.votes().record("ask", "2+2?", [("llama-cpp:smollm2", id_a), ("mock:echo", id_b)], winner="llama-cpp:smollm2")
    client.votes().leaderboard("ask")   # [Rating(model='llama-cpp:smollm2', elo=1016.0, wins=1, ...), ...]
"""

from __future__ import annotations

import builtins
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Sequence

from .engine import new_id
from .errors import InputError
from .store import Store

__all__ = ["Rating", "Vote", "Votes", "elo"]

START, K = 1000.0, 32.0


@dataclass(frozen=True)
class Vote:
    id: str
    created: str
    task: str
    prompt: str
    winner: str | None  # None: a tie
    candidates: tuple[tuple[str, str | None], ...]  # (model, log id of its answer)

    @property
    def models(self) -> list[str]:
        return [model for model, _ in self.candidates]


@dataclass(frozen=True)
class Rating:
    model: str
    elo: float
    wins: int
    losses: int
    ties: int

    @property
    def votes(self) -> int:
        return self.wins + self.losses + self.ties


def elo(votes: Sequence[Vote]) -> list[Rating]:
    """Elo ratings from votes in the order given, best first."""
    rating: dict[str, float] = {}
    tally: dict[str, list[int]] = {}
    for vote in votes:
        models = vote.models
        for model in models:
            rating.setdefault(model, START)
            tally.setdefault(model, [0, 0, 0])
        if vote.winner is None:
            pairs = [(a, b, 0.5) for i, a in enumerate(models) for b in models[i + 1:]]
            for model in models:
                tally[model][2] += 1
        else:
            pairs = [(vote.winner, other, 1.0) for other in models if other != vote.winner]
            tally[vote.winner][0] += 1
            for other in models:
                if other != vote.winner:
                    tally[other][1] += 1
        for a, b, score in pairs:  # all pairs of one vote use the ratings from before it
            expected = 1 / (1 + 10 ** ((rating[b] - rating[a]) / 400))
            delta = K * (score - expected)
            rating[a] += delta
            rating[b] -= delta
    ranked = sorted(rating, key=lambda m: (-rating[m], m))
    return [Rating(m, round(rating[m], 1), *tally[m]) for m in ranked]


class Votes:
    """The votes in one log (a Client's store)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def record(self, task: str, prompt: str, candidates: Sequence[tuple[str, str | None]],
               winner: str | None) -> Vote:
        """Store a vote; `winner` is one of the candidates' models, or None for a tie."""
        models = [model for model, _ in candidates]
        if not task.strip():
            raise InputError("a vote needs a task (ask, see, transcribe, speak, ...)")
        if len(models) < 2 or len(set(models)) != len(models):
            raise InputError("a vote compares at least two different models", hint=f"got {models}")
        if winner is not None and winner not in models:
            raise InputError(f"the winner {winner!r} is not one of the compared models", hint=", ".join(models))
        vote = Vote(new_id(), datetime.now(timezone.utc).isoformat(timespec="milliseconds"), task.strip(),
                    prompt, winner, tuple((m, r) for m, r in candidates))
        self.store._execute("INSERT INTO votes (id, created, task, prompt, winner, candidates) VALUES (?, ?, ?, ?, ?, ?)",
                            (vote.id, vote.created, vote.task, vote.prompt, vote.winner,
                             json.dumps([list(c) for c in vote.candidates])))
        return vote

    def list(self, task: str | None = None, limit: int = 1000) -> list[Vote]:
        """Votes, oldest first (the order ratings replay them in)."""
        where, params = ("WHERE task = ?", (task,)) if task else ("", ())
        rows = self.store._query(f"SELECT * FROM votes {where} ORDER BY created, id LIMIT ?", (*params, limit))
        return [self._vote(row) for row in rows]

    def leaderboard(self, task: str | None = None) -> builtins.list[Rating]:
        return elo(self.list(task))

    def tasks(self) -> builtins.list[str]:
        return [row["task"] for row in self.store._query("SELECT DISTINCT task FROM votes ORDER BY task")]

    @staticmethod
    def _vote(row: Any) -> Vote:
        candidates = tuple((str(m), r) for m, r in json.loads(row["candidates"]))
        return Vote(row["id"], row["created"], row["task"], row["prompt"], row["winner"], candidates)
