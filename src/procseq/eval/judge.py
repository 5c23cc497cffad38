"""VLM rubric judge over any OpenAI-compatible chat-completions endpoint (optional; for real data).

Follows the MakeAnything appendix evaluation: a vision-language model sees the prompt and the
frames in order and rates **Accuracy**, **Coherence** and **Usability** from 1 to 5, answering in
JSON. The rubric below is our wording of those three criteria. Only the standard library is used:
frames go as base64 PNG data URLs, the API key comes from an environment variable (none is sent
when it is unset, for local servers). Synthetic data is scored with ground truth instead
(:mod:`procseq.eval.metrics`); a judge's opinion is never the only evidence.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import re
import threading
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any

from PIL import Image

from procseq.jsonio import MAX_DEPTH, check_strings, loads, nesting_depth
from procseq.sequence import Sequence

MAX_REPLY_BYTES = 2 * 1024 * 1024
"""Largest endpoint answer read (a plan of 256 steps is under 100 KB); a longer one is refused."""
MAX_JSON_TRIES = 32
"""How many ``{`` of a reply are tried as the start of its JSON object (keeps reading linear in its length)."""

RUBRIC = """You are an expert evaluator of procedural image sequences: images that show, step by step, \
how an artifact is made (a painting, a drawing, a LEGO build, a dish, a sculpture...).

You will see the target description and the frames in order, each with its step caption. Rate the \
sequence on three criteria, each an integer from 1 (very poor) to 5 (excellent):

- Accuracy: does the sequence depict the described artifact, and does each frame match its step \
caption? Does the final frame show the finished artifact as described (objects, colours, counts, \
positions)?
- Coherence: is the process logical and continuous? Each step should build on the previous one \
(no parts appearing and disappearing at random, no steps out of order, the artifact's identity, \
colours and layout stay consistent across frames).
- Usability: could a person follow these frames to make the artifact themselves? Are the steps \
clear, reasonably sized (neither trivial nor skipping work) and instructive?

Answer with JSON only, no other text, exactly in this form:
{"Accuracy": <1-5>, "Coherence": <1-5>, "Usability": <1-5>, "Reason": "<one or two sentences>"}"""
"""The system prompt sent to the judge."""

CRITERIA = ("Accuracy", "Coherence", "Usability")


class JudgeError(ValueError):
    """The judge's reply could not be read as the rubric's JSON."""


@dataclass
class JudgeScore:
    """The judge's ratings (integers 1-5) and its short reason."""

    accuracy: int
    coherence: int
    usability: int
    reason: str = ""

    @property
    def mean(self) -> float:
        """Mean of the three ratings."""
        return (self.accuracy + self.coherence + self.usability) / 3.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable view."""
        return asdict(self)


def _rating(name: str, value: Any, text: str) -> int:
    if isinstance(value, dict):
        value = next((v for k, v in value.items() if k.lower() in ("score", "rating", "value")), None)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.0+)?)\s*(?:/\s*5)?\s*", value)
        value = float(m.group(1)) if m else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
        raise JudgeError(f"The judge's {name} is not an integer 1-5 (got {value!r}) in reply: {text[:300]!r}")
    if not 1 <= int(value) <= 5:
        raise JudgeError(f"The judge's {name} = {int(value)} is outside 1-5 in reply: {text[:300]!r}")
    return int(value)


def _json_objects(text: str) -> list[dict[str, Any]]:
    """The JSON objects in a reply (prose and code fences around them allowed): at most :data:`MAX_JSON_TRIES`
    starting ``{`` are tried, each object is skipped over once found (linear time), and a reply nested deeper
    than :data:`~procseq.jsonio.MAX_DEPTH` is refused (``JudgeError``), never a ``RecursionError``."""
    if nesting_depth(text) > MAX_DEPTH:
        raise JudgeError(f"The reply is nested more than {MAX_DEPTH} levels deep; it is not the JSON asked for.")
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    start, tries = text.find("{"), 0
    while start >= 0 and tries < MAX_JSON_TRIES:
        tries += 1
        try:
            obj, end = decoder.raw_decode(text, start)
        except (json.JSONDecodeError, RecursionError):
            start = text.find("{", start + 1)
            continue
        if isinstance(obj, dict):
            check_strings(obj, "The reply")
            found.append(obj)
        start = text.find("{", end)
    return found


def parse_judgement(text: str) -> JudgeScore:
    """Read the rubric JSON out of a judge reply (code fences and surrounding prose are tolerated).

    Keys match case-insensitively; ratings may be integers, integral floats or strings like ``"4"``
    or ``"4/5"``. Raises :class:`JudgeError` (a ``ValueError``) naming what is missing.
    """
    if not isinstance(text, str) or not text.strip():
        raise JudgeError("The judge returned an empty reply; expected JSON with Accuracy, Coherence, Usability.")
    for obj in _json_objects(text):
        keys = {k.lower(): v for k, v in obj.items() if isinstance(k, str)}
        if all(c.lower() in keys for c in CRITERIA):
            a, c, u = (_rating(c, keys[c.lower()], text) for c in CRITERIA)
            reason = keys.get("reason", keys.get("reasoning", ""))
            return JudgeScore(a, c, u, str(reason) if reason is not None else "")
    raise JudgeError(
        "The judge's reply has no JSON object with Accuracy, Coherence and Usability (1-5); use a "
        f"model that follows JSON instructions. Reply was: {text[:300]!r}"
    )


def image_data_url(image: Image.Image) -> str:
    """A PNG ``data:`` URL of `image`, as chat-completions endpoints accept in ``image_url``."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def build_messages(sequence: Sequence) -> list[dict[str, Any]]:
    """Chat messages for one sequence: the rubric as system prompt, then prompt + captioned frames."""
    content: list[dict[str, Any]] = [{"type": "text", "text": f"Target description: {sequence.prompt}"}]
    for i, (frame, caption) in enumerate(zip(sequence.frames, sequence.captions)):
        content.append({"type": "text", "text": f"Step {i + 1}/{sequence.num_frames}: {caption}"})
        content.append({"type": "image_url", "image_url": {"url": image_data_url(frame)}})
    content.append({"type": "text", "text": "Rate this sequence. Answer with the JSON only."})
    return [{"role": "system", "content": RUBRIC}, {"role": "user", "content": content}]


def chat_completions_url(url: str) -> str:
    """``url`` itself if it ends in ``/chat/completions``, else ``url + "/chat/completions"``."""
    url = url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"Judge URL {url!r} must start with http:// or https:// (e.g. http://127.0.0.1:8000/v1).")
    return url if url.endswith("/chat/completions") else url + "/chat/completions"


def reply_text(response: dict[str, Any]) -> str:
    """The assistant text of a chat-completions response (string or list-of-parts content)."""
    try:
        content = response["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as err:
        raise JudgeError(
            f"Not a chat-completions response (no choices[0].message.content): {str(response)[:300]}"
        ) from err
    if isinstance(content, list):
        content = "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    if not isinstance(content, str):
        raise JudgeError(f"The judge's message content is not text: {content!r}"[:300])
    return content


class Judge:
    """Rate sequences with a VLM behind an OpenAI-compatible ``/chat/completions`` endpoint.

    Args:
        url: the endpoint, or its base (``http://host:port/v1``).
        model: the model name sent in the request.
        api_key_env: environment variable holding the API key (no header when unset).
        timeout: seconds per request.
        temperature: sampling temperature (0 for repeatable ratings).
        max_tokens: reply length limit.
    """

    def __init__(self, url: str, model: str, api_key_env: str = "OPENAI_API_KEY", timeout: float = 120.0,
                 temperature: float = 0.0, max_tokens: int = 300):
        self.url = chat_completions_url(url)
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.temperature = temperature
        self.max_tokens = max_tokens

    def request(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """POST a chat-completions request and return the decoded JSON response.

        `timeout` bounds the whole request (connecting, a server that trickles its answer byte by byte, reading),
        the answer is read up to :data:`MAX_REPLY_BYTES`; every network failure is a ``ConnectionError`` and an
        answer that is not a JSON object is a ``JudgeError``, each with one line that says what to check.
        """
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["value"] = self._request(messages)
            except BaseException as err:  # handed to the caller's thread
                box["error"] = err

        worker = threading.Thread(target=work, daemon=True, name="procseq-endpoint")
        worker.start()
        worker.join(self.timeout)
        if worker.is_alive():  # left to die with the process: a daemon thread on a socket with a timeout
            raise ConnectionError(f"The endpoint {self.url} did not finish answering within {self.timeout:g} s; "
                                  "check the server, or use a faster model.")
        if "error" in box:
            raise box["error"]
        return box["value"]

    def _request(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        body = {"model": self.model, "messages": messages, "temperature": self.temperature,
                "max_tokens": self.max_tokens}
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                data = resp.read(MAX_REPLY_BYTES + 1)
        except urllib.error.HTTPError as e:
            try:
                detail = " ".join(e.read(300).decode("utf-8", errors="replace").split())
            except (OSError, http.client.HTTPException):
                detail = ""
            hint = f" Set ${self.api_key_env} to a valid API key." if e.code in (401, 403) else ""
            raise ConnectionError(f"The endpoint {self.url} answered HTTP {e.code}: {detail}{hint}") from e
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", None) or e
            raise ConnectionError(f"Cannot reach the endpoint {self.url} ({type(e).__name__}: {reason}); check the "
                                  "URL and that the server runs.") from e
        if len(data) > MAX_REPLY_BYTES:
            raise JudgeError(f"The endpoint {self.url} answered more than {MAX_REPLY_BYTES} bytes; it is not a "
                             "chat-completions answer.")
        try:
            return loads(data.decode("utf-8", errors="replace"), f"The answer of {self.url}", dict)
        except ValueError as e:
            raise JudgeError(f"{e} (a chat-completions endpoint answers one JSON object)") from None

    def __call__(self, sequence: Sequence) -> JudgeScore:
        """Rate one sequence."""
        return parse_judgement(reply_text(self.request(build_messages(sequence))))


__all__ = ["CRITERIA", "RUBRIC", "Judge", "JudgeError", "JudgeScore", "build_messages", "chat_completions_url",
           "image_data_url", "parse_judgement", "reply_text"]
