"""The VLM judge against a fake local chat-completions endpoint, and its reply parsing."""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from PIL import Image

from procseq.eval.judge import Judge, JudgeError, chat_completions_url, parse_judgement
from procseq.sequence import Sequence


class FakeEndpoint:
    """A chat-completions server on 127.0.0.1 that records requests and replies with `reply`."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        self.reply: str = ""
        self.status = 200
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                endpoint.requests.append((self.path, dict(self.headers), body))
                if endpoint.status != 200:
                    payload = b'{"error": "denied"}'
                else:
                    payload = json.dumps({"choices": [{"message": {"role": "assistant",
                                                                   "content": endpoint.reply}}]}).encode()
                self.send_response(endpoint.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEndpoint]:
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")  # never route the fake endpoint via a proxy
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    ep = FakeEndpoint()
    yield ep
    ep.close()


def _seq() -> Sequence:
    frames = [Image.new("RGB", (16, 16), (60 * i, 0, 0)) for i in range(3)]
    return Sequence(frames, ["base", "walls", "roof"], "a small red house", "lego")


def test_judge_round_trip(endpoint: FakeEndpoint, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PROCSEQ_TEST_KEY", "sk-test")
    endpoint.reply = '```json\n{"Accuracy": 4, "Coherence": "5", "Usability": 3.0, "Reason": "fine"}\n```'
    score = Judge(endpoint.url, model="vlm", api_key_env="PROCSEQ_TEST_KEY", timeout=10)(_seq())
    assert (score.accuracy, score.coherence, score.usability, score.reason) == (4, 5, 3, "fine")
    assert score.mean == pytest.approx(4.0)
    path, headers, body = endpoint.requests[0]
    assert path == "/v1/chat/completions" and headers["Authorization"] == "Bearer sk-test"
    assert body["model"] == "vlm" and body["messages"][0]["role"] == "system"
    assert "Accuracy" in body["messages"][0]["content"]
    parts = body["messages"][1]["content"]
    urls = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    assert len(urls) == 3 and urls[0].startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(urls[2].split(",", 1)[1])))
    assert decoded.size == (16, 16) and decoded.getpixel((0, 0)) == (120, 0, 0)
    assert any("Step 2/3: walls" in p.get("text", "") for p in parts)


def test_judge_without_key_sends_no_header(endpoint: FakeEndpoint, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("PROCSEQ_TEST_KEY", raising=False)
    endpoint.reply = 'Sure! {"accuracy": 2, "coherence": 2, "usability": 1}'
    score = Judge(endpoint.url + "/chat/completions", model="m", api_key_env="PROCSEQ_TEST_KEY")(_seq())
    assert (score.accuracy, score.usability) == (2, 1)
    assert "Authorization" not in endpoint.requests[0][1]


def test_judge_malformed_reply_is_a_clear_error(endpoint: FakeEndpoint):
    endpoint.reply = "I think it is pretty good, maybe a 4."
    with pytest.raises(JudgeError, match="Accuracy, Coherence and Usability"):
        Judge(endpoint.url, model="m")(_seq())


def test_judge_http_error(endpoint: FakeEndpoint):
    endpoint.status = 401
    with pytest.raises(ConnectionError, match="HTTP 401.*API key"):
        Judge(endpoint.url, model="m", api_key_env="PROCSEQ_TEST_KEY")(_seq())


@pytest.mark.parametrize(
    "reply, match",
    [
        ("", "empty"),
        ('{"Accuracy": 4, "Coherence": 5}', "no JSON object"),
        ('{"Accuracy": 7, "Coherence": 5, "Usability": 3}', "outside 1-5"),
        ('{"Accuracy": "great", "Coherence": 5, "Usability": 3}', "not an integer"),
        ('{"Accuracy": 3.5, "Coherence": 5, "Usability": 3}', "not an integer"),
        ('{"Accuracy": 4, "Coherence": 5, "Usability": 3', "no JSON object"),
    ],
)
def test_parse_judgement_errors(reply: str, match: str):
    with pytest.raises(JudgeError, match=match):
        parse_judgement(reply)
    assert issubclass(JudgeError, ValueError)


def test_parse_judgement_variants():
    s = parse_judgement('notes {"x": 1} then {"Accuracy": {"score": 5}, "Coherence": "4/5", "Usability": 1}')
    assert (s.accuracy, s.coherence, s.usability) == (5, 4, 1)


def test_url_validation():
    assert chat_completions_url("http://h/v1/") == "http://h/v1/chat/completions"
    with pytest.raises(ValueError, match="http://"):
        chat_completions_url("localhost:8000")
