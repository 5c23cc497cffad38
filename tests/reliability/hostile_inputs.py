"""The hostile cases of issue 23: batch folders, file targets that are devices or FIFOs, leftovers of killed runs,
step counts and numbers without bound, JSON of every shape, a misbehaving planner endpoint, Markdown injection.

Each is a :class:`~tests.reliability.hostile.Case`; `check` catches a wrong result behind an exit 0, `says` a
clean error that does not name what to change. ``{endpoint}`` is the URL of a local chat-completions server
(:func:`endpoint_url`) whose path picks how it misbehaves: ``/b/<behaviour>/v1``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

from tests.reliability.hostile import MODEL, Case, SkipCase, both, photo, sequences, write

GEN = ["generate", "a red circle", "--model", MODEL, "--frames", "4", "--steps", "1"]
BATCH = ["generate", "--prompts", "p.jsonl", "--out", "b", "--model", MODEL, "--frames", "4", "--steps", "1"]
GOOD_LINE = '{"prompt": "a red circle painted on white paper"}'
EVIL = ["<script>alert(1)</script>", "[click](javascript:alert(1))", "<img src=x onerror=alert(1)>",
        "line one\n# injected heading\n<iframe src=//x>", "![x](javascript:alert(2)) **bold** `code`"]
EP = "{endpoint}"


# -- a misbehaving chat-completions endpoint -------------------------------------------------------------------

def _answer(text: object) -> bytes:
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        request = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0)).decode("utf-8", "replace")
        behaviour = self.path.split("/")[2] if self.path.startswith("/b/") else "good"
        n = int(m.group(1)) if (m := re.search(r"exactly (\d+) steps", request)) else 4
        if behaviour in ("401", "404", "500"):
            return self._send(int(behaviour), b'{"error": "no"}')
        if behaviour == "close":
            self.close_connection = True
            return
        if behaviour == "trickle":  # headers, then one byte every 0.2 s for up to 40 s
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            try:
                for _ in range(200):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass
            return
        bodies = {
            "big": _answer('{"captions": ["a", ' * 16_000),  # 300 KB, 16,000 unclosed objects
            "parts": _answer([{"type": "text", "text": 5}, {"type": "text", "text": ["x"]}]),
            "deep": b'{"choices": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            "list": b"[1, 2]",
            "notjson": b"hello, I am not JSON",
            "surrogate": _answer('{"captions": [' + ", ".join(['"\\ud800 step"'] * n) + "]}"),
            "evil": _answer(json.dumps({"title": "a red <b>circle</b>\n# title injection",
                                        "captions": [EVIL[i % len(EVIL)] for i in range(n)]})),
        }
        self._send(200, bodies.get(behaviour, _answer(json.dumps({"captions": [f"step {i}" for i in range(n)]}))))


_SERVER: list[ThreadingHTTPServer] = []


def endpoint_url() -> str:
    """The base URL of the local misbehaving endpoint (started on first use, in a daemon thread)."""
    if not _SERVER:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        _SERVER.append(server)
    return f"http://127.0.0.1:{_SERVER[0].server_address[1]}"


# -- setups and checks -----------------------------------------------------------------------------------------

def fifo(name: str) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        os.mkfifo(root / name)
    return make


def null_device(name: str) -> Callable[[Path], None]:
    """A private null device node (as /dev/null: char 1,3) in the work folder: a case that wrongly replaces it
    replaces only this copy, never the machine's /dev/null. Needs root (CAP_MKNOD); skipped otherwise."""
    def make(root: Path) -> None:
        try:
            os.mknod(root / name, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        except OSError as err:
            raise SkipCase(f"cannot make a device node here ({err.strerror})") from err
    return make


def still(path: str, kind: str) -> Callable[[Path], str | None]:
    """Check that `path` is still a FIFO or a character device (not replaced by a regular file)."""
    def check(root: Path) -> str | None:
        mode = os.stat(root / path).st_mode
        ok = stat.S_ISFIFO(mode) if kind == "fifo" else stat.S_ISCHR(mode)
        return None if ok else f"{path} is no longer a {kind}"
    return check


def temp_record(folder: str, output: str, pid: int | None = None) -> Callable[[Path], None]:
    """A temporary folder `folder` as a killed procseq run leaves it (its record names `output` and a process
    that is not running: this one, which does not hold it)."""
    def make(root: Path) -> None:
        (root / folder).mkdir(parents=True)
        (root / folder / "frame_00.png").write_bytes(b"half")
        record = {"output": output, "host": socket.gethostname(), "pid": os.getpid() if pid is None else pid}
        (root / folder / ".procseq-temp").write_text(json.dumps(record))
    return make


def gone(*paths: str) -> Callable[[Path], str | None]:
    def check(root: Path) -> str | None:
        left = [p for p in paths if os.path.lexists(root / p)]
        return f"left behind: {left}" if left else None
    return check


def batch_record() -> Callable[[Path], None]:
    return write("b/batch.json", json.dumps({"written_by": "procseq generate --prompts", "status": "running"}))


def batch_result(done: list[str], absent: list[str]) -> Callable[[Path], str | None]:
    """The good items are generated, the bad ones are not, and batch.json is procseq's summary."""
    def check(root: Path) -> str | None:
        missing = [d for d in done if not (root / "b" / d / "sequence.json").is_file()]
        extra = [a for a in absent if (root / "b" / a).exists()]
        record = json.loads((root / "b" / "batch.json").read_text())
        if missing or extra or record.get("status") != "finished":
            return f"missing {missing}, unexpected {extra}, batch.json status {record.get('status')}"
        return None
    return check


def plan_steps(n: int) -> Callable[[Path], str | None]:
    def check(root: Path) -> str | None:
        got = len(json.loads((root / "p.json").read_text())["captions"])
        return None if got == n else f"the plan has {got} steps, not {n}"
    return check


def safe_markdown(folder: str, steps: int) -> Callable[[Path], str | None]:
    """tutorial.md holds no raw HTML, no link or image but the frames, one heading per step and one line per caption."""
    def check(root: Path) -> str | None:
        md = (root / folder / "tutorial.md").read_text()
        lines = [ln for ln in md.splitlines() if ln.strip()]
        heads = [ln for ln in lines if ln.startswith("#")]
        problems = []
        if "<" in md:
            problems.append("raw '<'")
        if re.search(r"(?<!\\)\]\((?!frame_\d\d\.png\))", md):
            problems.append("a link other than a frame")
        if len(heads) != steps + 1:
            problems.append(f"{len(heads)} headings for {steps} steps")
        if len(lines) != 2 + 3 * steps:  # title, note, then per step: heading, caption, image
            problems.append(f"{len(lines)} lines for {steps} steps")
        return "; ".join(problems) or None
    return check


def plan_file(name: str, data: object | str) -> Callable[[Path], None]:
    return write(name, data if isinstance(data, str) else json.dumps(data))


# -- the cases -------------------------------------------------------------------------------------------------

def input_cases() -> list[Case]:
    """The cases of issue 23 (about 110)."""
    c: list[Case] = []
    add = c.append
    good_plan = {"title": "a red circle", "domain": "painting", "captions": ["sketch", "block in", "shade", "detail"]}
    # 1. batch folders: procseq writes only into its own, removes only what it recorded
    add(Case("batch", "batch into a user's folder with a .x.tmp-y folder", BATCH,
             both(write("p.jsonl", GOOD_LINE), write("b/.thesis.tmp-draft/ch1.tex", "months"), write("b/a.txt", "a")),
             out=None, says="did not write"))
    add(Case("batch", "batch into a folder holding only a user's batch.json", BATCH,
             both(write("p.jsonl", GOOD_LINE), write("b/batch.json", '{"mine": 1}')), out=None, says="did not write"))
    add(Case("batch", "batch --out .", [*BATCH[:3], "--out", ".", *BATCH[5:]], write("p.jsonl", GOOD_LINE), out=None,
             says="current folder"))
    add(Case("batch", "batch --out a file", BATCH, both(write("p.jsonl", GOOD_LINE), write("b", "x")), out=None))
    add(Case("batch", "batch resumes its own folder, keeps a user's .x.tmp-y, removes its recorded leftover", BATCH,
             both(write("p.jsonl", GOOD_LINE), batch_record(), write("b/.thesis.tmp-draft/ch1.tex", "months"),
                  temp_record("b/.00001.tmp-killed", "00001")), expect="ok", out="b",
             keep=["b/batch.json", "b/.00001.tmp-killed"], check=gone("b/.00001.tmp-killed")))
    add(Case("batch", "batch keeps a temp folder recorded for another output", BATCH,
             both(write("p.jsonl", GOOD_LINE), batch_record(), temp_record("b/.00001.tmp-x", "00002")),
             expect="ok", out="b", keep=["b/batch.json"]))
    add(Case("batch", "batch keeps a temp folder of a running process", BATCH,
             both(write("p.jsonl", GOOD_LINE), batch_record(), temp_record("b/.00001.tmp-x", "00001", pid=1)),
             expect="ok", out="b", keep=["b/batch.json"]))
    add(Case("batch", "batch into a prompts file's own folder (an id names the prompts file)",
             ["generate", "--prompts", "b/p.jsonl", "--out", "b", "--model", MODEL, "--frames", "4", "--steps", "1"],
             both(write("b/p.jsonl", '{"prompt": "a red circle", "id": "p.jsonl"}\n' + GOOD_LINE), batch_record()),
             out=None, keep=["b/batch.json"], check=batch_result(["00002"], [])))
    bad_lines = {
        "id batch.json": '{"prompt": "x", "id": "batch.json"}', "id BATCH.JSON": '{"prompt": "x", "id": "BATCH.JSON"}',
        "id ../x": '{"prompt": "x", "id": "../x"}', "id .procseq-output": '{"prompt": "x", "id": ".procseq-output"}',
        "frames 0": '{"prompt": "x", "frames": 0}', "frames 1000": '{"prompt": "x", "frames": 1000}',
        "steps 0": '{"prompt": "x", "steps": 0}', "steps 100000": '{"prompt": "x", "steps": 100000}',
        "true_cfg_scale -5": '{"prompt": "x", "true_cfg_scale": -5}',
        "true_cfg_scale 1e30": '{"prompt": "x", "true_cfg_scale": 1e30}', "guidance NaN": '{"prompt": "x", "guidance": NaN}',
        "guidance Infinity": '{"prompt": "x", "guidance": Infinity}', "seed 2**70": '{"prompt": "x", "seed": %d}' % 2**70,
        "adapter_mix text": '{"prompt": "x", "adapter_mix": {"clay": "lots"}}',
        "adapter_mix list": '{"prompt": "x", "adapter_mix": {"clay": [1]}}',
        "adapter_mix -1": '{"prompt": "x", "adapter_mix": {"clay": -1}}', "adapter_mix {}": '{"prompt": "x", "adapter_mix": {}}',
        "lone surrogate prompt": '{"prompt": "a \\ud800 house"}', "lone surrogate key": '{"\\udc00": 1, "prompt": "x"}',
        "nested 100,000 deep": '{"prompt": "x", "id": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "a list": "[1, 2]", "not UTF-8": b'{"prompt": "\xff\xfe"}', "a NUL in the id": '{"prompt": "x", "id": "a\\u0000b"}',
    }
    for name, line in bad_lines.items():
        data = (line if isinstance(line, bytes) else line.encode()) + b"\n" + GOOD_LINE.encode() + b"\n"
        add(Case("batch lines", f"batch line: {name}", BATCH, write("p.jsonl", data), out=None,
                 check=batch_result(["00002"], ["00001"]), says="skipped"))
    add(Case("batch lines", "batch prompts file is a FIFO", BATCH, fifo("p.jsonl"), out=None, says="regular file"))
    add(Case("batch lines", "batch prompts file is a folder", BATCH, write("p.jsonl/x", "x"), out=None))
    # 2. file outputs that are devices or FIFOs are refused, before any work
    for cmd, args in (("plan", ["plan", "a red lego house", "--overwrite", "--out"]),
                      ("bench --json-out", ["bench", "--model", MODEL, "--runs", "1", "--frames", "4", "--steps", "1",
                                            "--json-out"]),
                      ("data montage", ["data", "montage", "--out"])):
        add(Case("file targets", f"{cmd} a null device", [*args, "null"], null_device("null"), out=None,
                 check=still("null", "char"), says="regular file"))
        add(Case("file targets", f"{cmd} a FIFO", [*args, "fifo"], fifo("fifo"), out=None, check=still("fifo", "fifo"),
                 says="regular file"))
    # 3. a rerun cleans the recorded leftovers of its own killed run, and nothing else
    leftovers = both(temp_record(".out.tmp-killed", "out"), write(".out.tmp-mine/notes.txt", "mine"),
                     temp_record(".out.tmp-other", "other"))
    for cmd, args, setup in (
            ("generate", [*GEN, "--out", "out"], leftovers),
            ("continue", ["continue", "photo.png", "--prompt", "a red circle", "--model", MODEL, "--frames", "4",
                          "--steps", "1", "--out", "out"], both(leftovers, photo())),
            ("tutorial", ["tutorial", "--plan", "plan.json", "--model", MODEL, "--mode", "grid", "--steps", "1",
                          "--out", "out"], both(leftovers, plan_file("plan.json", good_plan)))):
        add(Case("leftovers", f"{cmd} rerun after kill -9", args, setup, expect="ok",
                 keep=[".out.tmp-killed"], check=gone(".out.tmp-killed")))
    # 4. step counts read from an instruction: 1..256, before any allocation
    for words, ok in (("in 50000000 steps", False), ("in 1000000000000 steps", False), ("in 100000 steps", False),
                      ("in -15265 steps", False), ("in 0 steps", False), ("in 257 steps", False),
                      ("in " + "9" * 5000 + " steps", False), ("in zero steps", False), ("in 12 steps", True),
                      ("in 256 steps", True), ("in twenty steps", True)):
        n = {"in 12 steps": 12, "in 256 steps": 256, "in twenty steps": 20}.get(words)
        add(Case("counts", f"plan '... {words[:30]}'", ["plan", f"build a blue LEGO tower {words}", "--out", "p.json"],
                 expect="ok" if ok else "error", out=None, check=plan_steps(n) if ok else None,
                 says=None if ok else "steps"))
    for v in ("0", "-1", "257", "100000"):
        add(Case("counts", f"plan --frames {v}", ["plan", "a red lego house", "--frames", v, "--out", "p.json"], out=None))
    # 5. numbers without a bound before
    add(Case("bounds", "recraft --extend 1000000000", ["recraft", "photo.png", "--model", MODEL, "--no-lora", "--frames",
             "4", "--steps", "1", "--extend", "1000000000"], photo(), says="--extend"))
    for opt, v in (("--gif-ms", "10000000000"), ("--gif-ms", "60001"), ("--true-cfg-scale", "1e30"),
                   ("--guidance", "1e30"), ("--true-cfg-scale", "101")):
        add(Case("bounds", f"generate {opt} {v}", [*GEN, opt, v, "--out", "out"], says=opt))
    add(Case("bounds", "data make --workers 100000", ["data", "make", "--out", "out", "--per-domain", "1", "--workers",
             "100000"], says="--workers"))
    for v in ("0", "-5"):
        add(Case("bounds", f"continue --max-pixels {v}", ["continue", "photo.png", "--prompt", "x", "--model", MODEL,
                 "--frames", "4", "--max-pixels", v, "--out", "out"], photo(), says="--max-pixels"))
    for opt, v in (("--k-add", "inf"), ("--k-del", "nan"), ("--alpha", "-inf"), ("--max-rounds", "100000")):
        add(Case("bounds", f"adapt {opt} {v}", ["adapt", "seqs/00-good", "--interpolator", "average", opt, v, "--out",
                 "out"], sequences("good"), says=opt))
    add(Case("bounds", "plan --planner-timeout 0", ["plan", "x", "--planner-timeout", "0", "--out", "p.json"], out=None))
    # quantization goes through diffusers (torchao) in every layout; without torchao installed: one line, what to install
    for extra in (["--mode", "regional"], ["--mode", "frame-by-frame"], ["--known", "0=photo.png"]):
        add(Case("bounds", f"generate --quantize int8 {' '.join(extra)}", [*GEN, "--quantize", "int8", *extra,
                 "--out", "out"], photo(), says="--quantize"))
    # 6. JSON of every shape, through the one reader
    shapes: dict[str, object | str] = {
        "a list": [1, 2], "a string": '"plan"', "a number": "7", "null": "null", "meta a number": {**good_plan, "meta": 5},
        "captions numbers": {**good_plan, "captions": [1, 2, 3, 4]}, "captions a string": {**good_plan, "captions": "abcd"},
        "title a list": {**good_plan, "title": ["x"]}, "no captions": {"title": "x", "domain": "painting"},
        "captions empty": {**good_plan, "captions": []}, "300 captions": {**good_plan, "captions": ["s"] * 300},
        "nested 100,000 deep": '{"title": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "lone surrogate": '{"title": "\\ud800", "domain": "painting", "captions": ["a", "b", "c", "d"]}',
        "not JSON": "{oops", "empty": "",
    }
    for name, data in shapes.items():
        add(Case("json", f"generate --plan {name}", [*GEN[:2], "--model", MODEL, "--steps", "1", "--plan", "plan.json",
                 "--out", "out"], plan_file("plan.json", data), says="plan.json"))
    add(Case("json", "generate --plan not UTF-8", [*GEN, "--plan", "plan.json", "--out", "out"],
             write("plan.json", b'{"title": "\xff"}'), says="plan.json"))
    for name, setup in (("a folder", write("plan.json/x", "x")), ("a FIFO", fifo("plan.json")), ("missing", None)):
        add(Case("json", f"generate --plan {name}", [*GEN, "--plan", "plan.json", "--out", "out"], setup, says="plan.json"))
    add(Case("json", "tutorial --plan nested 100,000 deep", ["tutorial", "--plan", "plan.json", "--model", MODEL,
             "--out", "out"], plan_file("plan.json", shapes["nested 100,000 deep"]), says="plan.json"))
    deep = "[" * 100_000 + "]" * 100_000
    add(Case("json", "eval --score a sequence.json nested 100,000 deep", ["eval", "--score", "seqs", "--out", "out"],
             both(sequences("good", "good"), write("seqs/01-good/sequence.json", deep)), expect="either",
             keep=["seqs/01-good/sequence.json"]))
    add(Case("json", "adapt a sequence.json nested 100,000 deep", ["adapt", "seqs/00-good", "--interpolator", "average",
             "--out", "out"], both(sequences("good"), write("seqs/00-good/sequence.json", deep)), says="sequence.json"))
    add(Case("json", "adapt a sequence.json that is a list", ["adapt", "seqs/00-good", "--interpolator", "average",
             "--out", "out"], both(sequences("good"), write("seqs/00-good/sequence.json", "[1]")), says="sequence.json"))
    # 7. a planner endpoint that fails in every way: one line each, bounded in time
    plan_ep = ["plan", "build a LEGO tower in 4 steps", "--domain", "lego", "--out", "p.json", "--planner-timeout", "3",
               "--planner"]
    for name, url in (("nothing listening", "http://127.0.0.1:9/v1"), ("unknown host", "http://nonexistent.invalid/v1"),
                      *((b, f"{EP}/b/{b}/v1") for b in ("401", "404", "500", "close", "trickle", "big", "parts",
                                                         "deep", "list", "notjson", "surrogate"))):
        add(Case("endpoint", f"plan --planner endpoint: {name}", [*plan_ep, url], out=None,
                 says="endpoint" if name in ("nothing listening", "unknown host", "401", "404", "500", "close",
                                              "trickle") else "planner"))
    # 8. Markdown injection: from a hand-edited plan and from an endpoint's answer
    evil_plan = {"title": "a red <b>circle</b>\n# injected", "domain": "painting", "captions": EVIL[:4]}
    add(Case("markdown", "tutorial from a plan with HTML, links and headings in it", ["tutorial", "--plan", "plan.json",
             "--model", MODEL, "--mode", "grid", "--steps", "1", "--out", "out"], plan_file("plan.json", evil_plan),
             expect="ok", check=safe_markdown("out", 4)))
    add(Case("markdown", "tutorial planned by an endpoint answering HTML and links", ["tutorial", "paint a red circle in 4 "
             "steps", "--domain", "painting", "--planner", f"{EP}/b/evil/v1", "--model", MODEL, "--mode", "grid", "--steps",
             "1", "--out", "out"], expect="ok", check=safe_markdown("out", 4)))
    add(Case("markdown", "tutorial prompt with a newline heading", ["tutorial", "paint a red circle\n# pwned\n<script>x"
             "</script> in 4 steps", "--domain", "painting", "--model", MODEL, "--mode", "grid", "--steps", "1", "--out",
             "out"], expect="ok", check=safe_markdown("out", 4)))
    # 9. smaller ones
    add(Case("smaller", "plan --domain spaceship", ["plan", "a rocket", "--domain", "spaceship", "--out", "p.json"],
             out=None, says="spaceship"))
    add(Case("smaller", "tutorial --domain spaceship", ["tutorial", "a rocket", "--domain", "spaceship", "--model", MODEL,
             "--out", "out"], says="spaceship"))
    return c


__all__ = ["endpoint_url", "input_cases"]
