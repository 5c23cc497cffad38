"""VLM rubric judge over any OpenAI-compatible chat-completions endpoint (optional; for real data).

Follows the MakeAnything appendix evaluation: a vision-language model sees the prompt and the
frames in order and rates **Accuracy**, **Coherence** and **Usability** from 1 to 5, answering in
JSON. The rubric below is our wording of those three criteria. Frames go as base64 PNG data URLs through
:class:`procseq.endpoint.ChatEndpoint` (standard library only). Synthetic data is scored with ground truth instead
(:mod:`procseq.eval.metrics`); a judge's opinion is never the only evidence.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from procseq.endpoint import ChatEndpoint, EndpointError, chat_completions_url, json_objects, reply_text
from procseq.images import image_data_url
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


JudgeError = EndpointError
"""The judge's reply could not be read as the rubric's JSON (the endpoint's error type)."""


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


def parse_judgement(text: str) -> JudgeScore:
    """Read the rubric JSON out of a judge reply (code fences and surrounding prose are tolerated).

    Keys match case-insensitively; ratings may be integers, integral floats or strings like ``"4"``
    or ``"4/5"``. Raises :class:`JudgeError` (a ``ValueError``) naming what is missing.
    """
    if not isinstance(text, str) or not text.strip():
        raise JudgeError("The judge returned an empty reply; expected JSON with Accuracy, Coherence, Usability.")
    for obj in json_objects(text):
        keys = {k.lower(): v for k, v in obj.items() if isinstance(k, str)}
        if all(c.lower() in keys for c in CRITERIA):
            a, c, u = (_rating(c, keys[c.lower()], text) for c in CRITERIA)
            reason = keys.get("reason", keys.get("reasoning", ""))
            return JudgeScore(a, c, u, str(reason) if reason is not None else "")
    raise JudgeError(
        "The judge's reply has no JSON object with Accuracy, Coherence and Usability (1-5); use a "
        f"model that follows JSON instructions. Reply was: {text[:300]!r}"
    )


def build_messages(sequence: Sequence) -> list[dict[str, Any]]:
    """Chat messages for one sequence: the rubric as system prompt, then prompt + captioned frames."""
    content: list[dict[str, Any]] = [{"type": "text", "text": f"Target description: {sequence.prompt}"}]
    for i, (frame, caption) in enumerate(zip(sequence.frames, sequence.captions)):
        content.append({"type": "text", "text": f"Step {i + 1}/{sequence.num_frames}: {caption}"})
        content.append({"type": "image_url", "image_url": {"url": image_data_url(frame)}})
    content.append({"type": "text", "text": "Rate this sequence. Answer with the JSON only."})
    return [{"role": "system", "content": RUBRIC}, {"role": "user", "content": content}]


class Judge(ChatEndpoint):
    """Rate sequences with a VLM behind an OpenAI-compatible ``/chat/completions`` endpoint
    (:class:`~procseq.endpoint.ChatEndpoint`: url, model, api_key_env, timeout, temperature, max_tokens)."""

    def __call__(self, sequence: Sequence) -> JudgeScore:
        """Rate one sequence."""
        return parse_judgement(reply_text(self.request(build_messages(sequence))))


__all__ = ["CRITERIA", "RUBRIC", "Judge", "JudgeError", "JudgeScore", "build_messages", "chat_completions_url",
           "parse_judgement", "reply_text"]
