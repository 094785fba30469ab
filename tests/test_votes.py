"""Votes and their Elo leaderboard, stored in the log (what the studio's compare page writes)."""

from __future__ import annotations

import pytest

from imagine import Client
from imagine.errors import InputError
from imagine.votes import START, Vote, elo


def vote(winner, *models, task="ask"):
    return Vote("v", "t", task, "p", winner, tuple((m, None) for m in models))


def test_elo_winner_gains_what_the_loser_loses_and_ties_between_equals_change_nothing():
    ratings = {r.model: r for r in elo([vote("a", "a", "b")])}
    assert ratings["a"].elo == START + 16 and ratings["b"].elo == START - 16
    assert (ratings["a"].wins, ratings["b"].losses) == (1, 1)
    tied = {r.model: r for r in elo([vote(None, "a", "b")])}
    assert tied["a"].elo == tied["b"].elo == START and tied["a"].ties == 1


def test_elo_ranks_the_model_that_keeps_winning_first_and_upsets_move_more():
    votes = [vote("a", "a", "b"), vote("a", "a", "c"), vote("b", "b", "c"), vote("a", "a", "b", "c")]
    ranked = elo(votes)
    assert [r.model for r in ranked] == ["a", "b", "c"]
    favourite = elo([vote("a", "a", "b")] * 5)
    upset = elo([*([vote("a", "a", "b")] * 5), vote("b", "a", "b")])
    gain = {r.model: r.elo for r in upset}["b"] - {r.model: r.elo for r in favourite}["b"]
    assert gain > 16  # beating a higher-rated model is worth more than an even match


def test_votes_are_stored_in_the_log_and_feed_a_leaderboard_per_task(tmp_path):
    with Client(home=tmp_path) as client:
        votes = client.votes()
        votes.record("ask", "2+2?", [("llama-cpp:smollm2", "r1"), ("mock:echo", "r2")], winner="mock:echo")
        votes.record("speak", "hi", [("piper:joe", None), ("espeak:en", None)], winner=None)
    with Client(home=tmp_path) as again:  # a new client reads them back from the log
        stored = again.votes().list("ask")
        assert len(stored) == 1 and stored[0].winner == "mock:echo"
        assert stored[0].candidates == (("llama-cpp:smollm2", "r1"), ("mock:echo", "r2"))
        assert [r.model for r in again.votes().leaderboard("ask")] == ["mock:echo", "llama-cpp:smollm2"]
        assert again.votes().tasks() == ["ask", "speak"]
        assert len(again.votes().list()) == 2


@pytest.mark.parametrize("candidates,winner,fragment", [
    ([("a", None)], "a", "at least two"),
    ([("a", None), ("a", None)], "a", "at least two"),
    ([("a", None), ("b", None)], "c", "not one of"),
])
def test_a_malformed_vote_is_refused_naming_why(tmp_path, candidates, winner, fragment):
    with Client(home=tmp_path) as client, pytest.raises(InputError, match=fragment):
        client.votes().record("ask", "p", candidates, winner)
