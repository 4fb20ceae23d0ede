"""Tiny, randomly initialised models of the real architectures, built in code and saved to a folder:
the reranker families' real code paths without a hub (seeded, so every build is the same model)."""

from __future__ import annotations

from pathlib import Path

import torch

from rerank_lab.models import resolve_model

MINILM = "all-MiniLM-L6-v2"
# a Qwen3-Reranker-style chat template: instruction, query and document in their own turns, then
# the answer position whose "yes" / "no" logits are the score
CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}instruct: {{ m['content'] }} "
    "{% elif m['role'] == 'query' %}query: {{ m['content'] }} {% else %}document: {{ m['content'] }} {% endif %}"
    "{% endfor %}answer:"
)


def tiny_bert(folder: Path, labels: int, seed: int = 0, init_range: float = 0.02) -> Path:
    """A BERT sequence classifier (1 layer, hidden 32) with ``labels`` logits and MiniLM's tokenizer;
    ``init_range``: the weights' standard deviation (larger: scores that differ more between pairs)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        initializer_range=init_range,
    )
    config.num_labels = labels
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertForSequenceClassification(config)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(resolve_model(MINILM)).save_pretrained(folder)
    return folder


def tiny_qwen3(folder: Path, seed: int = 0, chat_template: str | None = None, init_range: float = 0.02) -> Path:
    """A Qwen3 causal LM (2 layers, hidden 32, tied embeddings) with MiniLM's WordPiece tokenizer,
    whose vocabulary holds "yes" and "no" (sentence-transformers' default LogitScore tokens);
    ``chat_template``: saved with the tokenizer, as a published reranker ships one."""
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    tok = AutoTokenizer.from_pretrained(resolve_model(MINILM))
    config = Qwen3Config(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
        initializer_range=init_range,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        Qwen3ForCausalLM(config).save_pretrained(folder)
    if chat_template is not None:
        tok.chat_template = chat_template
    tok.save_pretrained(folder)
    return folder
