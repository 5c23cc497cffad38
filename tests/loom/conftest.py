"""Fixtures of the Loom tests: a tiny offline causal LM and a fake OpenAI-compatible endpoint."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 1-layer GPT-2 with a word-level tokenizer, saved offline (it answers gibberish)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("lm") / "tiny-lm"
    words = ["<unk>", "<eos>", "{", "}", "[", "]", '"', ":", ",", "title", "captions", "a", "blue", "lego", "tower",
             "place", "brick", "step", "the"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<eos>", pad_token="<eos>")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(words), n_positions=128, n_embd=16, n_layer=1, n_head=2))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


class FakeEndpoint:
    """A local chat-completions server answering from a list of replies (the last one repeats)."""

    def __init__(self, replies: list[str]):
        self.replies, self.requests = list(replies), []

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(body)
        text = self.replies[min(len(self.requests), len(self.replies)) - 1]
        return {"choices": [{"message": {"role": "assistant", "content": text}}]}


@pytest.fixture
def fake_endpoint() -> Iterator[Any]:
    """``start(replies) -> (url, endpoint)``: an http.server in a thread on 127.0.0.1."""
    servers = []

    def start(replies: list[str]) -> tuple[str, FakeEndpoint]:
        endpoint = FakeEndpoint(replies)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                data = json.dumps(endpoint.answer(body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1", endpoint

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()
