"""A tiny random-weight Llama for the transformers engine's tests: a BPE tokenizer trained offline on generated
sentences (with a chat template and an image token), a 2-layer config, and an end-of-text that greedy never picks."""

from __future__ import annotations

import random
from typing import Any

WORDS = ("the a one two red blue green big small cat dog bird fish tree house car road sky sun moon star "
         "sees runs jumps eats likes shows looks is are was on in under over near and or but with picture "
         "image answer question yes no left right top bottom color shape circle square line light dark").split()
TEMPLATE = ("{% for m in messages %}<s>{{ m['role'] }}: {% if m['content'] is string %}{{ m['content'] }}"
            "{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}"
            "{% endif %}{% endfor %}{% endif %}</s>\n{% endfor %}{% if add_generation_prompt %}<s>assistant: {% endif %}")


def make_tokenizer() -> Any:
    """A BPE tokenizer trained offline on generated sentences, with a chat template and an image token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(0)
    sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(400)]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(sentences, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<s>", "</s>", "<pad>", "<image>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", extra_special_tokens={"image_token": "<image>"})
    fast.chat_template = TEMPLATE
    return fast


def text_config(vocab: int) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                       bos_token_id=1, eos_token_id=2, pad_token_id=3)


def never_eos(lm_head: Any) -> None:
    """A zero output row makes the end-of-text logit 0, below the best random one: greedy never ends early."""
    import torch

    with torch.no_grad():
        lm_head.weight[2].zero_()


def save_tiny_llama(folder: Any) -> Any:
    """A tiny random Llama (never ends on its own) and its tokenizer saved into `folder`; returns it."""
    import torch
    from transformers import LlamaForCausalLM

    tok = make_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(text_config(len(tok)))
    never_eos(model.lm_head)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
