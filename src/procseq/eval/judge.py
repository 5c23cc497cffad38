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
import io
import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any

from PIL import Image

from procseq.sequence import Sequence

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
    decoder = json.JSONDecoder()
    found = []
    for m in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text, m.start())
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            found.append(obj)
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
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
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
        """POST a chat-completions request and return the decoded JSON response."""
        body = {"model": self.model, "messages": messages, "temperature": self.temperature,
                "max_tokens": self.max_tokens}
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as e:
            detail = e.read().decode("utf-8", errors="replace")[:300]
            hint = f" Set ${self.api_key_env} to a valid API key." if e.code in (401, 403) else ""
            raise ConnectionError(f"Judge endpoint {self.url} answered HTTP {e.code}: {detail}{hint}") from e
        except (urllib.error.URLError, TimeoutError) as e:
            raise ConnectionError(f"Cannot reach the judge endpoint {self.url}: {e}; check the URL.") from e
        try:
            return json.loads(raw)
        except json.JSONDecodeError as e:
            raise JudgeError(f"The judge endpoint returned non-JSON: {raw[:300]!r}") from e

    def __call__(self, sequence: Sequence) -> JudgeScore:
        """Rate one sequence."""
        return parse_judgement(reply_text(self.request(build_messages(sequence))))


__all__ = ["CRITERIA", "RUBRIC", "Judge", "JudgeError", "JudgeScore", "build_messages", "chat_completions_url",
           "image_data_url", "parse_judgement", "reply_text"]
