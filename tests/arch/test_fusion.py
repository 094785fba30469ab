"""imagine.arch.fusion and ttm: the mixed-modal vocabulary layout, training sequences and loss masks, causal
logits, constrained generation (exactly N image codes between <boi> and <eoi>), and the Token Turing
Machine's read/process/write shapes, fixed-size memory that changes with its input, and gradients through
the Mirasol-style combiner across chunks."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="needs the torch extra: pip install -e '.[torch]'")

from imagine.arch.fusion import (SPECIALS, FusionVocab, allowed_next, collate, fusion_lm,  # noqa: E402
                                 generate_mixed, interleave, segments)
from imagine.arch.ttm import Summarise, TokenTuringMachine, TTMCombiner, TTMConfig  # noqa: E402

torch.set_num_threads(1)
VOCAB = FusionVocab.for_texts(["a red circle", "a blue square"], n_codes=8, image_tokens=4)
CODES = torch.tensor([[3, 0], [7, 1]])                      # a 2x2 latent grid


def tiny_lm(seed: int = 0):
    torch.manual_seed(seed)
    return fusion_lm(VOCAB, block_size=48, n_layer=2, n_head=2, n_embd=32).eval()


# -- vocabulary and sequences ----------------------------------------------------------------------------

def test_vocabulary_layout_is_specials_then_text_then_image_codes():
    v = VOCAB
    assert (v.pad, v.bos, v.eos, v.boi, v.eoi) == tuple(range(len(SPECIALS)))
    assert v.chars == " abcdeilqrsu"
    assert v.text_offset == 5 and v.image_offset == 5 + len(v.chars) and v.size == v.image_offset + 8
    assert v.decode_text(v.encode_text("a red circle")) == "a red circle"
    assert v.image_ids(CODES) == [v.image_offset + c for c in (3, 0, 7, 1)]
    ids = torch.arange(v.size)
    assert v.is_image(ids).sum() == 8 and v.is_text(ids).sum() == len(v.chars)
    assert not (v.is_image(ids) & v.is_text(ids)).any()
    with pytest.raises(ValueError, match="not in the vocabulary"):
        v.encode_text("a green circle")
    with pytest.raises(ValueError, match="4 tokens"):
        v.image_ids(torch.zeros(3, dtype=torch.long))


def test_caption_then_image_has_markers_in_place_and_loss_only_on_the_image():
    ids, mask = interleave(VOCAB, ["a red", CODES], loss_on=("image",))
    v = VOCAB
    assert ids.tolist() == [v.bos, *v.encode_text("a red"), v.boi, *v.image_ids(CODES), v.eoi, v.eos]
    assert mask.tolist() == [False] * 6 + [True] * 6 + [False]    # <boi> codes <eoi> only


def test_image_then_caption_trains_only_the_text_and_eos():
    ids, mask = interleave(VOCAB, [CODES, "a red"], loss_on=("text",))
    v = VOCAB
    assert ids[:7].tolist() == [v.bos, v.boi, *v.image_ids(CODES), v.eoi]
    assert mask.tolist() == [False] * 7 + [True] * 6             # "a red" and <eos>
    inputs, targets = collate([(ids, mask), interleave(VOCAB, ["a"])])
    assert inputs.shape == targets.shape == (2, len(ids) - 1)
    assert inputs[0].tolist() == ids[:-1].tolist()
    counted = targets[0] != -1
    assert v.is_text(targets[0][counted]).sum() == 5 and targets[0][counted][-1] == v.eos
    assert not v.is_image(targets[0][counted]).any()              # no loss on any image token
    assert targets[1].tolist() == [*v.encode_text("a"), v.eos] + [-1] * (len(ids) - 3)  # padding ignored


def test_logits_are_causal_and_masked_targets_do_not_count():
    model = tiny_lm()
    ids, _ = interleave(VOCAB, ["a red circle", CODES])
    ids = ids[None]
    later = ids.clone()
    later[0, 10:] = VOCAB.image_offset                            # change only the future
    with torch.no_grad():
        a, _ = model(ids)
        b, _ = model(later)
    assert torch.allclose(a[0, :10], b[0, :10], atol=1e-6)
    assert not torch.allclose(a[0, 10:], b[0, 10:])
    inputs, targets = collate([interleave(VOCAB, ["a red circle", CODES], loss_on=("image",))])
    logits, loss = model(inputs, targets)
    keep = targets[0] != -1
    want = torch.nn.functional.cross_entropy(logits[0, keep].float(), targets[0, keep])
    assert loss is not None and abs(loss.item() - want.item()) < 1e-2        # z-loss 1e-4 adds a little


# -- constrained generation ------------------------------------------------------------------------------

def test_allowed_next_follows_the_image_state():
    v = VOCAB
    allowed = allowed_next(v, torch.tensor([False, True, True]), torch.tensor([0, 2, 4]))
    text, mid, full = allowed
    assert text[v.boi] and text[v.eos] and text[v.text_offset:v.image_offset].all()
    assert not text[v.image_offset:].any() and not text[v.eoi]
    assert mid[v.image_offset:].all() and mid.sum() == v.n_codes
    assert full[v.eoi] and full.sum() == 1
    assert not allowed_next(v, torch.tensor([False]), torch.tensor([0]), allow_images=False)[0, v.boi]


def test_generation_emits_exactly_n_image_tokens_between_markers():
    model = tiny_lm()
    with torch.no_grad():                                         # push the untrained model toward <boi>
        model.head.weight[VOCAB.boi] += 0.5 * model.head.weight[VOCAB.boi].sign()
    prompt = interleave(VOCAB, ["a red"])[0][None, :-1].repeat(4, 1)           # no <eos>
    out = generate_mixed(model, VOCAB, prompt, 40, temperature=1.0, generator=torch.Generator().manual_seed(0))
    n_images = 0
    for row in out:
        seq = row.tolist()
        for i, tok in enumerate(seq):
            if tok == VOCAB.boi:
                body = seq[i + 1:i + 1 + VOCAB.image_tokens]
                assert all(t >= VOCAB.image_offset for t in body)
                if i + 1 + VOCAB.image_tokens < len(seq):
                    assert seq[i + 1 + VOCAB.image_tokens] == VOCAB.eoi
                n_images += 1
        inside = VOCAB.is_image(row).sum().item()
        assert inside <= VOCAB.image_tokens * seq.count(VOCAB.boi)   # no codes outside an image
    assert n_images > 0


def test_a_prompt_ending_inside_an_image_is_completed_then_closed():
    model = tiny_lm(1)
    v = VOCAB
    prompt = torch.tensor([[v.bos, v.boi, v.image_offset + 2]])
    out = generate_mixed(model, v, prompt, 20, temperature=0.0)
    seq = out[0].tolist()
    assert all(t >= v.image_offset for t in seq[2:6]) and seq[6] == v.eoi      # 1 given + 3 new codes
    parts = segments(v, out[0])
    assert isinstance(parts[0], torch.Tensor) and parts[0].shape == (4,) and parts[0][0] == 2
    assert out.shape[1] <= 3 + 20


def test_segments_splits_text_and_images():
    ids, _ = interleave(VOCAB, ["a red", CODES, "circle"])
    parts = segments(VOCAB, ids)
    assert parts[0] == "a red" and parts[2] == "circle"
    assert isinstance(parts[1], torch.Tensor) and parts[1].tolist() == CODES.reshape(-1).tolist()


def test_generation_refuses_to_run_past_the_block():
    with pytest.raises(ValueError, match="block_size"):
        generate_mixed(tiny_lm(), VOCAB, torch.tensor([[VOCAB.bos]]), 100)


# -- Token Turing Machine ----------------------------------------------------------------------------------

CFG = TTMConfig(dim=32, memory=6, read=3, n_layer=1, n_head=4)


@pytest.mark.parametrize("kind", ["query", "tokenlearner"])
def test_summarise_returns_k_tokens(kind):
    torch.manual_seed(0)
    s = Summarise(32, 5, 4, kind)
    assert s(torch.randn(2, 11, 32)).shape == (2, 5, 32)


@pytest.mark.parametrize("kind", ["query", "tokenlearner"])
def test_ttm_read_write_shapes_and_memory_changes_with_the_input(kind):
    torch.manual_seed(0)
    ttm = TokenTuringMachine(TTMConfig(dim=32, memory=6, read=3, n_layer=1, n_head=4, summariser=kind))
    memory = ttm.init_memory(2)
    inputs = torch.randn(2, 10, 32)
    assert ttm.read(memory, inputs).shape == (2, 3, 32)
    out, new = ttm.step(memory, inputs)
    assert out.shape == (2, 3, 32) and new.shape == memory.shape == (2, 6, 32)
    assert not torch.allclose(new, memory)
    _, other = ttm.step(memory, inputs + 1.0)
    assert not torch.allclose(other, new)                                     # a different input, a different memory


def test_memory_stays_fixed_size_over_many_steps():
    torch.manual_seed(0)
    ttm = TokenTuringMachine(CFG)
    stream = torch.randn(1, 50, 7, 32)
    outs, memory = ttm(stream)
    assert outs.shape == (1, 50, 3, 32) and memory.shape == (1, 6, 32)
    assert torch.isfinite(outs).all() and torch.isfinite(memory).all()
    first, mem1 = ttm(stream[:, :20])                                          # the stream in two calls
    second, mem2 = ttm(stream[:, 20:], mem1)
    assert torch.allclose(torch.cat([first, second], dim=1), outs, atol=1e-5)
    assert torch.allclose(mem2, memory, atol=1e-5)


def test_gradients_flow_through_the_combiner_and_across_chunks():
    torch.manual_seed(0)
    comb = TTMCombiner(CFG, video_dim=12, audio_dim=5)
    video = torch.randn(2, 4, 6, 12, requires_grad=True)
    audio = torch.randn(2, 4, 3, 5, requires_grad=True)
    outs, memory = comb(video, audio)
    assert outs.shape == (2, 4, 3, 32) and memory.shape == (2, 6, 32)
    outs[:, -1].pow(2).sum().backward()                                       # loss on the last chunk only
    assert video.grad is not None and audio.grad is not None
    assert video.grad[:, 0].abs().sum() > 0 and audio.grad[:, 0].abs().sum() > 0  # reached chunk 1 via memory
    for name, p in comb.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert comb.ttm.memory0.grad is not None and comb.ttm.memory0.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="same batch"):
        comb(video[:, :3], audio)
