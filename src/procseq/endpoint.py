"""An OpenAI-compatible chat-completions endpoint: one bounded request, its reply read as text or JSON objects.

Used by the VLM judge (:mod:`procseq.eval.judge`) and the endpoint planner (:mod:`procseq.planning.llm`). Only the
standard library: the API key comes from an environment variable (none is sent when it is unset, for local
servers); the timeout bounds the whole request; every network failure is a ``ConnectionError`` with one line that
says what to check, and a reply that is not what was asked for is an :class:`EndpointError`.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import urllib.error
import urllib.request
from typing import Any

from procseq.jsonio import MAX_DEPTH, check_strings, loads, nesting_depth

MAX_REPLY_BYTES = 2 * 1024 * 1024
"""Largest endpoint answer read (a plan of 256 steps is under 100 KB); a longer one is refused."""
MAX_JSON_TRIES = 32
"""How many ``{`` of a reply are tried as the start of its JSON object (keeps reading linear in its length)."""


class EndpointError(ValueError):
    """The endpoint's reply could not be read as what was asked for."""


def json_objects(text: str) -> list[dict[str, Any]]:
    """The JSON objects in a reply (prose and code fences around them allowed): at most :data:`MAX_JSON_TRIES`
    starting ``{`` are tried, each object is skipped over once found (linear time), and a reply nested deeper
    than :data:`~procseq.jsonio.MAX_DEPTH` is refused (``EndpointError``), never a ``RecursionError``."""
    if nesting_depth(text) > MAX_DEPTH:
        raise EndpointError(f"The reply is nested more than {MAX_DEPTH} levels deep; it is not the JSON asked for.")
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


def chat_completions_url(url: str) -> str:
    """``url`` itself if it ends in ``/chat/completions``, else ``url + "/chat/completions"``."""
    url = url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"Endpoint URL {url!r} must start with http:// or https:// (e.g. http://127.0.0.1:8000/v1).")
    return url if url.endswith("/chat/completions") else url + "/chat/completions"


def reply_text(response: dict[str, Any]) -> str:
    """The assistant text of a chat-completions response (string or list-of-parts content)."""
    try:
        content = response["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as err:
        raise EndpointError(
            f"Not a chat-completions response (no choices[0].message.content): {str(response)[:300]}"
        ) from err
    if isinstance(content, list):
        content = "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    if not isinstance(content, str):
        raise EndpointError(f"The endpoint's message content is not text: {content!r}"[:300])
    return content


class ChatEndpoint:
    """An OpenAI-compatible ``/chat/completions`` endpoint (a local server or a hosted API), standard library only.

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
        answer that is not a JSON object is a ``EndpointError``, each with one line that says what to check.
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
            raise EndpointError(f"The endpoint {self.url} answered more than {MAX_REPLY_BYTES} bytes; it is not a "
                             "chat-completions answer.")
        try:
            return loads(data.decode("utf-8", errors="replace"), f"The answer of {self.url}", dict)
        except ValueError as e:
            raise EndpointError(f"{e} (a chat-completions endpoint answers one JSON object)") from None


__all__ = ["MAX_JSON_TRIES", "MAX_REPLY_BYTES", "ChatEndpoint", "EndpointError", "chat_completions_url", "json_objects",
           "reply_text"]
