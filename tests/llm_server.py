"""A real OpenAI-compatible server on loopback for the LLM pruner's tests: ``transformers serve``
(FastAPI + Uvicorn, from the dev extras) serving a tiny randomly initialised Llama built here.

The model's word-level vocabulary holds the special tokens and three words: ``yes``, ``no``,
``maybe``. Every prompt word outside it is ``[UNK]``, so the random weights still answer in those
words; a request's ``logit_bias`` decides which ones it may use (yes/no only, or always ``maybe``,
or an immediate end of sequence) -- the real generation path, steered only through the API.
The listwise reranker's tests build the same model over their own vocabulary (passage identifiers).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

VOCAB = {"[PAD]": 0, "[UNK]": 1, "</s>": 2, "<s>": 3, "yes": 4, "no": 5, "maybe": 6}
YES_NO_ONLY = {str(i): -100.0 for t, i in VOCAB.items() if t not in ("yes", "no")}
ALWAYS_MAYBE = {str(VOCAB["maybe"]): 100.0}
STOP_AT_ONCE = {str(VOCAB["</s>"]): 100.0}


def build_tiny_llm(folder: Path, vocab: dict[str, int] = VOCAB) -> Path:
    """A 1-layer Llama (hidden size 16) with random weights (seed 0) and a word-level tokenizer
    (``vocab``: its words; ids 0-3 must be the special tokens of :data:`VOCAB`)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with a space
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", eos_token="</s>", bos_token="<s>")
    fast.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=0,
        eos_token_id=2,
        bos_token_id=3,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        LlamaForCausalLM(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def transformers_serve(model: Path, log: Path) -> Iterator[str]:
    """``transformers serve <model>`` on a free loopback port; yields the base URL (``.../v1``)."""
    port = _free_port()
    exe = Path(sys.executable).with_name("transformers")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(exe), "serve", str(model), "--host", "127.0.0.1", "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"transformers serve did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
