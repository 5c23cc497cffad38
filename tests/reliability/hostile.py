"""The hostile-user suite of issue #10: bad inputs and faults given to the ``procseq`` command line.

Every case runs in a fresh folder holding files the user cares about, through click's test runner
(in-process, so a Python traceback is seen as an exception), and is classified:

* ``ok``: exit 0; ``clean``: non-zero exit with one ``procseq: error:`` line (or click's own usage
  error) and no traceback; ``traceback``: an exception escaped; ``unclear``: non-zero with anything
  else (several lines, nothing on stderr).
* ``lost``: a file that existed before the command is gone or changed (goal: never).
* ``partial``: a failed command left an output or a temporary ``.*.tmp-*`` / ``.*.old-*`` entry behind.

``python experiments/reliability.py`` runs them all and prints the counts; ``tests/reliability/test_hostile.py``
asserts every case is ``ok`` or ``clean`` with nothing lost or partial.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from click.testing import CliRunner

MODEL = "{model}"  # replaced by the micro model folder
ENDPOINT = "{endpoint}"  # replaced by the URL of a local misbehaving chat-completions server
TEXT = "a red circle"
GEN = ["generate", TEXT, "--model", MODEL, "--frames", "4", "--steps", "1"]
REC = ["recraft", "photo.png", "--model", MODEL, "--no-lora", "--frames", "4", "--steps", "1"]


@dataclass
class Case:
    """One hostile invocation: `args` (``{model}`` is replaced), files made by `setup` in the work folder,
    and the outcome it must have (``error``, ``ok`` or ``either``); `out` is the output it may create."""

    family: str
    name: str
    args: list[str]
    setup: Callable[[Path], None] | None = None
    expect: str = "error"
    out: str | None = "out"
    keep: list[str] = field(default_factory=list)  # files it may legitimately replace
    disk_free_kb: int | None = None  # run with work/disk a full tmpfs with this much room left (needs root)
    slow: bool = False  # builds a model from scratch: pytest runs it only with -m slow (the script always)
    check: Callable[[Path], str | None] | None = None  # after the run: a wrong result it describes, or None
    says: str | None = None  # a clean error's line must contain this (it names what to change)


class SkipCase(Exception):
    """Raised by a setup that cannot be made here (e.g. a device node without root)."""


@dataclass
class Outcome:
    """What a case did."""

    case: Case
    kind: str  # ok | clean | traceback | unclear | wrong (check failed) | skipped (no tmpfs for a full-disk case)
    lost: list[str]
    partial: list[str]
    detail: str

    @property
    def good(self) -> bool:
        """The case met its expectation and neither lost data nor left partial output."""
        if self.kind == "skipped":
            return True
        wanted = {"error": ("clean",), "ok": ("ok",), "either": ("ok", "clean")}[self.case.expect]
        return self.kind in wanted and not self.lost and not self.partial


# -- files a hostile user hands over ---------------------------------------------------------------------------


def png_header(width: int, height: int, rows: int | None = None) -> bytes:
    """A small PNG that claims `width` x `height` (1-bit gray): white rows, compressed (`rows` of them; a
    bomb's header is refused before its data is read, so one row is enough there)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = zlib.compress((b"\0" + b"\xff" * ((width + 7) // 8)) * (height if rows is None else rows), 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def photo(name: str = "photo.png") -> Callable[[Path], None]:
    def make(root: Path) -> None:
        from PIL import Image

        Image.new("RGB", (20, 12), (200, 30, 30)).save(root / name)
    return make


def write(name: str, data: bytes | str | Callable[[], bytes]) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        value = data() if callable(data) else data
        path.write_bytes(value.encode() if isinstance(value, str) else value)
    return make


def both(*makers: Callable[[Path], None]) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        for m in makers:
            m(root)
    return make


def adapter_file(kind: str) -> Callable[[Path], None]:
    """Adapter files that are damaged in one way each (from a real asymmetric file of the micro model)."""
    def make(root: Path) -> None:
        import torch
        from diffusers import FluxTransformer2DModel
        from safetensors.torch import load_file, save_file

        from procseq.adapters import AsymmetricLoRAConfig, add_asymmetric_lora, save_adapters

        model = Path(os.environ["PROCSEQ_HOSTILE_MODEL"])
        good = root / "good.safetensors"
        t = FluxTransformer2DModel.from_pretrained(model, subfolder="transformer")
        add_asymmetric_lora(t, ["clay"], AsymmetricLoRAConfig(rank=2))
        save_adapters(t, good)
        data = good.read_bytes()
        from safetensors import safe_open

        with safe_open(str(good), "pt") as f:
            meta = dict(f.metadata())
        tensors = load_file(good)
        target = root / "bad.safetensors"
        if kind == "truncated":
            target.write_bytes(data[: len(data) // 2])
        elif kind == "random":
            target.write_bytes(os.urandom(4096))
        elif kind == "empty":
            target.write_bytes(b"")
        elif kind == "shapes":
            save_file({k: torch.zeros(v.shape[0] + 1, *v.shape[1:]) for k, v in tensors.items()}, target, meta)
        elif kind == "masked-metadata":
            info = json.loads(meta["procseq_adapter"])
            info["kind"] = "masked"
            save_file(tensors, target, {"procseq_adapter": json.dumps(info)})
        elif kind == "nan":
            save_file({k: torch.full_like(v, float("nan")) for k, v in tensors.items()}, target, meta)
        elif kind == "no-metadata":
            save_file(tensors, target)
        elif kind == "metadata-list":
            save_file(tensors, target, {"procseq_adapter": "[1, 2]"})
        good.unlink()
    return make


def sequences(*kinds: str) -> Callable[[Path], None]:
    """A folder ``seqs/`` of ground-truth sequence folders, some damaged (`kinds`: good, badjson, list,
    nokeys, negframes, corruptframe, missingframe, nospec, badspec)."""
    def make(root: Path) -> None:
        from procseq.data.synthetic import generate
        from procseq.sequence import Sequence

        for i, kind in enumerate(kinds):
            spec, frames = generate("lego", i, 32, "train")
            from PIL import Image

            folder = root / "seqs" / f"{i:02d}-{kind}"
            Sequence([Image.fromarray(f) for f in frames], spec.captions, spec.prompt, "lego").save(
                folder, extra={"spec": spec.to_dict()})
            js = folder / "sequence.json"
            if kind == "badjson":
                js.write_text("{not json")
            elif kind == "list":
                js.write_text("[1, 2]")
            elif kind == "nokeys":
                js.write_text('{"prompt": "x"}')
            elif kind == "negframes":
                js.write_text(js.read_text().replace(f'"num_frames": {spec.num_frames}', '"num_frames": -1'))
            elif kind == "corruptframe":
                (folder / "frame_00.png").write_bytes(b"\x89PNG garbage")
            elif kind == "missingframe":
                (folder / "frame_01.png").unlink()
            elif kind == "nospec":
                record = json.loads(js.read_text())
                record.pop("spec")
                js.write_text(json.dumps(record))
            elif kind == "badspec":
                record = json.loads(js.read_text())
                record["spec"] = {"domain": "lego"}
                js.write_text(json.dumps(record))
    return make


def model_copy(change: str) -> Callable[[Path], None]:
    """A copy of the micro model folder with one thing broken."""
    def make(root: Path) -> None:
        import shutil

        dst = root / "m"
        shutil.copytree(os.environ["PROCSEQ_HOSTILE_MODEL"], dst)
        if change == "index-list":
            (dst / "model_index.json").write_text("[1, 2]")
        elif change == "index-garbage":
            (dst / "model_index.json").write_text("{oops")
        elif change == "no-transformer":
            shutil.rmtree(dst / "transformer")
        elif change == "truncated-weights":
            f = next((dst / "transformer").glob("*.safetensors"))
            f.write_bytes(f.read_bytes()[:200])
        elif change == "procseq-json":
            (dst / "procseq.json").write_text("[]")
    return make


def corpus(kind: str) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        rows = {"traversal": {"file_name": "../../../../etc/passwd", "frames": [], "domain": "lego", "prompt": "x",
                              "captions": [], "num_frames": 4},
                "garbage": "not json"}
        (root / "corpus" / "train").mkdir(parents=True)
        row = rows[kind]
        (root / "corpus" / "train" / "metadata.jsonl").write_text(
            (json.dumps(row) if isinstance(row, dict) else row) + "\n")
    return make


def marked(name: str) -> Callable[[Path], None]:
    return write(f"{name}/.procseq-output", "")


# -- the cases ---------------------------------------------------------------------------------------------------


def cases() -> list[Case]:
    """Every hostile case (about 150)."""
    c: list[Case] = []
    add = c.append
    # 1. output safety: --out that is, holds or lies in the cwd or an input; unmarked folders; names
    for out in (".", "..", "x/..", "./", "../" + "work"):
        add(Case("output", f"generate --out {out} --overwrite", [*GEN, "--out", out, "--overwrite"],
                 write("x/keep.txt", "k"), out=None))
        add(Case("output", f"eval --out {out} --overwrite",
                 ["eval", "--baseline", "ground-truth", "--out", out, "--overwrite"], write("x/keep.txt", "k"), out=None))
        add(Case("output", f"init-tiny {out} --overwrite", ["init-tiny", out, "--overwrite"], write("x/k", "k"),
                 out=None))
    add(Case("output", "recraft --out = the photo's folder", ["recraft", "photos/finished.png", "--model", MODEL,
             "--no-lora", "--out", "photos", "--overwrite"], both(marked("photos"), photo("photos/finished.png")),
             out=None))
    add(Case("output", "eval --score gt --out gt/sequences", ["eval", "--score", "gt", "--out", "gt/sequences",
             "--overwrite"], both(sequences("good"), lambda r: (r / "seqs").rename(r / "gt"), marked("gt/sequences")),
             out=None))
    add(Case("output", "eval --score in --out its parent", ["eval", "--score", "gt/a", "--out", "gt", "--overwrite"],
             both(marked("gt"), write("gt/a/sequence.json", "{}")), out=None))
    add(Case("output", "generate --out the model folder", [*GEN, "--out", MODEL, "--overwrite"], out=None))
    add(Case("output", "generate --overwrite an unmarked folder", [*GEN, "--out", "mine", "--overwrite"],
             write("mine/thesis.tex", "months"), out=None))
    add(Case("output", "generate --out existing, no --overwrite", [*GEN, "--out", "mine"], write("mine/a", "a"),
             out=None))
    add(Case("output", "generate --out a file", [*GEN, "--out", "file.txt", "--overwrite"], write("file.txt", "f"),
             out=None))
    add(Case("output", "generate --out under a file", [*GEN, "--out", "file.txt/sub"], write("file.txt", "f"), out=None))
    add(Case("output", "generate --out x/missing/.. (x exists)", [*GEN, "--out", "x/missing/.."],
             write("x/keep.txt", "k"), out=None))  # found by hypothesis: normalised, it is x
    add(Case("output", "generate --out x/missing/.. --overwrite", [*GEN, "--out", "x/missing/..", "--overwrite"],
             write("x/keep.txt", "k"), out=None))
    add(Case("output", "generate --out 300-character name", [*GEN, "--out", "n" * 300], out=None))
    add(Case("output", "generate --overwrite a marked folder", [*GEN, "--out", "old", "--overwrite"],
             both(marked("old"), write("old/frame_00.png", "old")), expect="ok", out="old", keep=["old"]))
    add(Case("output", "data make --out . --overwrite", ["data", "make", "--out", ".", "--per-domain", "1",
             "--overwrite"], out=None))
    add(Case("output", "data make over an unmarked folder", ["data", "make", "--out", "mine", "--per-domain", "1",
             "--overwrite"], write("mine/a", "a"), out=None))
    add(Case("output", "adapter export onto a folder", ["adapter", "export", "--domain", "clay", "--out",
             "dir.safetensors", "--adapters", "bad.safetensors", "--model", MODEL],
             both(adapter_file("no-metadata"), write("dir.safetensors/x", "x")), out=None))
    add(Case("output", "adapter export not .safetensors", ["adapter", "export", "--domain", "clay", "--out", "x.bin",
             "--model", MODEL], out=None))
    add(Case("output", "adapter export under a file", ["adapter", "export", "--domain", "clay", "--out",
             "file.txt/x.safetensors", "--model", "procseq-tiny"], write("file.txt", "f"), out=None))
    add(Case("output", "adapter export 300-character name", ["adapter", "export", "--domain", "clay", "--out",
             "n" * 300 + ".safetensors", "--model", "procseq-tiny"], out=None))
    add(Case("output", "bench --json-out a folder", ["bench", "--model", MODEL, "--runs", "1", "--json-out", "d"],
             write("d/x", "x"), out=None))
    add(Case("output", "bench --json-out in a missing folder", ["bench", "--model", MODEL, "--runs", "1",
             "--json-out", "nope/b.json"], out=None))
    add(Case("output", "samples without a corpus", ["samples", "--model", MODEL, "--data", "nope", "--out",
             "s.png"], out=None))
    # 2. numbers
    for opt, values in {"--steps": ["0", "-1", "100000"], "--frames": ["0", "-3", "1000"],
                        "--frame-size": ["0", "-16", "100000", "20000"], "--guidance": ["nan", "inf", "-inf"],
                        "--true-cfg-scale": ["nan", "inf", "-1"], "--gif-ms": ["0", "-5"],
                        "--seed": [str(2**70), str(-(2**70))]}.items():
        for v in values:
            add(Case("numbers", f"generate {opt} {v}", [*GEN, opt, v, "--out", "out"]))
    for v in ("abc", "1.5", ""):
        add(Case("numbers", f"generate --steps {v!r}", [*GEN, "--steps", v, "--out", "out"]))
    add(Case("numbers", "generate --mode frame-by-frame --frames 1000", [*GEN, "--mode", "frame-by-frame", "--frames",
             "1000", "--out", "out"]))
    add(Case("numbers", "generate --frames 64 --frame-size 1024", [*GEN, "--frames", "64", "--frame-size", "1024",
             "--out", "out"]))
    add(Case("numbers", "recraft --steps 0", [*REC, "--steps", "0"], photo()))
    add(Case("numbers", "recraft --extend -1", [*REC, "--extend", "-1"], photo()))
    add(Case("numbers", "recraft --max-pixels 0", [*REC, "--max-pixels", "0"], photo()))
    add(Case("numbers", "recraft --seed 2**70", [*REC, "--seed", str(2**70)], photo()))
    add(Case("numbers", "eval --n 0", ["eval", "--baseline", "ground-truth", "--n", "0", "--out", "out"]))
    add(Case("numbers", "eval --steps -1", ["eval", "--model", MODEL, "--steps", "-1", "--out", "out"]))
    add(Case("numbers", "eval --true-cfg-scale nan", ["eval", "--model", MODEL, "--true-cfg-scale", "nan", "--out",
             "out"]))
    add(Case("numbers", "bench --runs 0", ["bench", "--model", MODEL, "--runs", "0"], out=None))
    add(Case("numbers", "bench --frames 0", ["bench", "--model", MODEL, "--frames", "0"], out=None))
    add(Case("numbers", "bench --steps 0", ["bench", "--model", MODEL, "--steps", "0"], out=None))
    add(Case("numbers", "samples --index -1", ["samples", "--model", MODEL, "--index", "-1", "--out", "s.png"], out=None))
    for opt, v in (("--per-domain", "0"), ("--per-domain", "-1"), ("--test-per-domain", "-1"),
                   ("--test-per-domain", "0"), ("--frame-size", "4096"), ("--frame-size", "20"), ("--frame-size", "0")):
        add(Case("numbers", f"data make {opt} {v}", ["data", "make", "--out", "out", "--per-domain", "1", opt, v]))
    for v in ("20000", "0", "-8"):
        add(Case("numbers", f"data montage --frame-size {v}", ["data", "montage", "--out", "m.png", "--frame-size", v],
                 out=None))
    for args in (["--max-steps", "-1"], ["--max-steps", "0"], ["--set", "train.max_steps=abc"],
                 ["--set", "train.max_stepz=3"], ["--set", "train=3"], ["--set", "optim.lr=.nan"],
                 ["--set", "optim.lr=-1"], ["--set", "train.batch_size=0"], ["--set", "data.caption_dropout=2"],
                 ["--set", "nonsense"], ["--set", "train.seed=1.5"], ["--set", "data.domains=7"]):
        add(Case("numbers", f"train {' '.join(args)}", ["train", "tiny", "--output-dir", "run", *args], out=None))
    # 3. text
    for name, prompt in (("empty", ""), ("blank", "   "), ("invalid UTF-8", "a red \udcff house"),
                         ("NUL", "a red\x00 house")):
        add(Case("text", f"generate prompt {name}", ["generate", prompt, "--model", MODEL, "--frames", "4",
                 "--steps", "1", "--out", "out"], expect="error" if name != "NUL" else "either"))
    for name, prompt in (("10,000 characters", "red " * 2500), ("emoji and CJK", "一座红色的房子 🏠"),
                         ("newlines", "a red\nhouse\n")):
        add(Case("text", f"generate prompt {name}", ["generate", prompt, "--model", MODEL, "--frames", "4",
                 "--steps", "1", "--out", "out"], expect="ok"))
    add(Case("text", "recraft --prompt invalid UTF-8", [*REC, "--prompt", "\udcff", "--out", "out"], photo()))
    add(Case("text", "generate negative prompt invalid UTF-8", [*GEN, "--negative-prompt", "\udcff", "--out", "out"]))
    # 4. domains and mixes
    for d in ("bogus", "", "LEGO", "../lego"):
        add(Case("domains", f"generate --domain {d!r}", [*GEN, "--domain", d, "--out", "out"]))
    for mix in ("a=b", "clay", "clay=nan", "clay=-1", "clay=0.5,bogus=0.5", "=1", ",", "clay=inf"):
        add(Case("domains", f"generate --adapter-mix {mix!r}", [*GEN, "--domain", "painting", "--adapter-mix", mix,
                 "--model", "procseq-tiny", "--out", "out"]))
    add(Case("domains", "eval --score X --domains Y", ["eval", "--score", "seqs", "--domains", "lego", "--out", "out"],
             sequences("good"), expect="ok"))
    add(Case("domains", "eval --score X --domains none-there", ["eval", "--score", "seqs", "--domains", "painting",
             "--out", "out"], sequences("good")))
    add(Case("domains", "eval --baseline without a corpus", ["eval", "--baseline", "ground-truth", "--domains", "lego",
             "--out", "out"]))
    # 5. models
    for name, model, setup in (("missing folder", "nope/", None), ("a file", "file.txt", write("file.txt", "x")),
                               ("folder without model_index", "empty", write("empty/x", "x")),
                               ("model_index.json a list", "m", model_copy("index-list")),
                               ("model_index.json garbage", "m", model_copy("index-garbage")),
                               ("no transformer", "m", model_copy("no-transformer")),
                               ("truncated weights", "m", model_copy("truncated-weights")),
                               ("procseq.json a list", "m", model_copy("procseq-json")),
                               ("hub id offline", "nobody/nothing", None)):
        add(Case("models", f"generate --model {name}", ["generate", TEXT, "--model", model, "--frames", "4", "--steps",
                 "1", "--out", "out"], setup))
    add(Case("models", "recraft --lora missing", ["recraft", "photo.png", "--model", MODEL, "--lora", "nope", "--out",
             "out"], photo()))
    add(Case("models", "recraft --lora and --no-lora", [*REC, "--lora", "nope"], photo()))
    add(Case("models", "recraft --lora garbage", ["recraft", "photo.png", "--model", MODEL, "--lora", "l.safetensors",
             "--frames", "4", "--steps", "1", "--out", "out"], both(photo(), write("l.safetensors", os.urandom(64)))))
    # 6. adapters (generate and adapter list/export)
    for kind in ("truncated", "random", "empty", "shapes", "masked-metadata", "nan", "no-metadata", "metadata-list"):
        add(Case("adapters", f"generate --adapters {kind}", [*GEN, "--adapters", "bad.safetensors", "--domain", "clay",
                 "--out", "out"], adapter_file(kind)))
        add(Case("adapters", f"adapter list --adapters {kind}", ["adapter", "list", "--adapters", "bad.safetensors"],
                 adapter_file(kind), out=None, expect="either" if kind in ("shapes", "nan") else "error"))
    add(Case("adapters", "generate --adapters a folder", [*GEN, "--adapters", "d", "--out", "out"], write("d/x", "x")))
    add(Case("adapters", "adapter export --domain and --mix", ["adapter", "export", "--domain", "clay", "--mix",
             "clay=1", "--out", "a.safetensors"], out=None))
    add(Case("adapters", "adapter export unknown domain", ["adapter", "export", "--domain", "bogus", "--out",
             "a.safetensors"], out=None))
    add(Case("adapters", "adapter list: model without adapters", ["adapter", "list", "--model", MODEL], out=None))
    # 7. devices
    for args in (["--device", "cuda"], ["--device", "bogus"], ["--device", "meta"], ["--device", "cuda:7"],
                 ["--device", "mps"], ["--cpu-offload"]):
        add(Case("devices", f"generate {' '.join(args)}", [*GEN, *args, "--out", "out"]))
    add(Case("devices", "recraft --device meta", [*REC, "--device", "meta"], photo()))
    # 8. images for recraft
    for name, data in (("empty", b""), ("random bytes", os.urandom(300)), ("text", "hello"),
                       ("truncated PNG", None), ("49,000,000 x 1 PNG", lambda: png_header(49_000_000, 1)),
                       ("20000 x 20000 PNG bomb", lambda: png_header(20_000, 20_000, rows=1)), ("GIF", None),
                       ("BMP", None)):
        if data is None:
            def make(root: Path, name: str = name) -> None:
                from PIL import Image

                im = Image.new("RGB", (40, 40), (10, 200, 10))
                if name == "GIF":
                    im.save(root / "photo.png", format="GIF")
                elif name == "BMP":
                    im.save(root / "photo.png", format="BMP")
                else:
                    im.save(root / "photo.png")
                    (root / "photo.png").write_bytes((root / "photo.png").read_bytes()[:60])
            setup = make
        else:
            setup = write("photo.png", data)
        add(Case("images", f"recraft {name}", [*REC, "--out", "out"], setup,
                 expect="ok" if name.startswith("49") else "error"))
    add(Case("images", "recraft a folder", [*REC, "--out", "out"], write("photo.png/x", "x")))
    add(Case("images", "recraft missing file", [*REC, "--out", "out"]))
    # 9. eval --score on damaged sequence folders: score the rest, list the bad ones
    for kind in ("badjson", "list", "nokeys", "negframes", "corruptframe", "missingframe", "nospec", "badspec"):
        add(Case("eval", f"eval --score with one {kind} folder", ["eval", "--score", "seqs", "--out", "out"],
                 sequences("good", kind), expect="ok"))
        add(Case("eval", f"eval --score only {kind}", ["eval", "--score", "seqs", "--out", "out"], sequences(kind)))
    add(Case("eval", "eval --score missing", ["eval", "--score", "nope", "--out", "out"]))
    add(Case("eval", "eval --score empty folder", ["eval", "--score", "seqs", "--out", "out"], write("seqs/x", "")))
    add(Case("eval", "eval two of --model/--baseline/--score", ["eval", "--baseline", "ground-truth", "--score", "x",
             "--out", "out"]))
    add(Case("eval", "eval --baseline without a corpus", ["eval", "--baseline", "retrieval", "--data", "nope", "--out",
             "out"]))
    # 10. training data
    for kind in ("traversal", "garbage"):
        add(Case("training", f"train on a corpus with {kind} metadata", ["train", "tiny", "--output-dir", "run",
                 "--set", "data.dir=corpus", "--max-steps", "1"], corpus(kind), out=None))
    add(Case("training", "train a missing config", ["train", "nope.yaml"], out=None))
    add(Case("training", "train a config that is a list", ["train", "c.yaml"], write("c.yaml", "- 1\n"), out=None))
    add(Case("training", "train a config that is not YAML", ["train", "c.yaml"], write("c.yaml", "a: [\n"), out=None))
    add(Case("training", "train without a corpus", ["train", "tiny", "--output-dir", "run", "--set", "data.dir=nope"],
             out=None))
    # 11. a full disk: every command that writes, onto a tmpfs with a few KB left (skipped without root)
    for name, args, free, setup in (
            ("generate", [*GEN, "--out", "disk/out"], 8, None),
            ("recraft", [*REC, "--out", "disk/out"], 8, photo()),
            ("eval --score", ["eval", "--score", "seqs", "--out", "disk/out"], 8, sequences("good")),
            ("data make", ["data", "make", "--out", "disk/c", "--per-domain", "1"], 8, None),
            ("data montage", ["data", "montage", "--out", "disk/m.png"], 0, None),
            ("init-tiny", ["init-tiny", "disk/m"], 8, None),
            ("adapter export", ["adapter", "export", "--domain", "clay", "--out", "disk/a.safetensors"], 8, None),
            ("bench --json-out", ["bench", "--model", MODEL, "--runs", "1", "--steps", "1", "--frames", "4",
                                  "--json-out", "disk/b.json"], 0, None),
            ("train", ["train", "tiny", "--output-dir", "disk/run", "--set", "data.dir=corpus", "--max-steps", "1"],
             0, None)):
        add(Case("disk full", f"{name} onto a full disk", args, setup, out=None, disk_free_kb=free,
                 slow=name in ("init-tiny", "train")))
    from tests.reliability.hostile_inputs import input_cases  # issue 23: batch, bounds, JSON, endpoint, Markdown

    return c + input_cases()


def full_disk(root: Path, free_kb: int) -> Callable[[], None] | None:
    """Mount a 1 MB tmpfs at root/disk and fill it up to `free_kb` KB; returns the unmount, None without root."""
    import subprocess

    disk = root / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1024k", "tmpfs", str(disk)], capture_output=True).returncode:
        disk.rmdir()
        return None
    (disk / "filler").write_bytes(b"\0" * ((1024 - free_kb) * 1024))
    return lambda: subprocess.run(["umount", "-l", str(disk)], check=False)


# -- running them ------------------------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every entry under `root`: file bytes, or None for a folder."""
    out: dict[str, bytes | None] = {}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = p.read_bytes() if p.is_file() and not p.is_symlink() else None
    return out


def run_case(case: Case, work: Path, model_dir: Path) -> Outcome:
    """Run `case` in the fresh folder `work` (cwd), with `model_dir` as ``{model}``; classify what happened."""
    import shutil

    (work / "work").mkdir(parents=True)
    root = work / "work"
    model_dir = Path(shutil.copytree(model_dir, work / "model"))  # its own copy: a case may target it
    os.environ["PROCSEQ_HOSTILE_MODEL"] = str(model_dir)
    (root / "notes.txt").write_text("the user's notes")
    (work / "beside.txt").write_text("next to the work folder")
    if case.setup is not None:
        try:
            case.setup(root)
        except SkipCase as why:
            return Outcome(case, "skipped", [], [], str(why))
    unmount = None
    if case.disk_free_kb is not None:
        if case.name.startswith("train"):
            _small_corpus(root)
        unmount = full_disk(root, case.disk_free_kb)
        if unmount is None:
            return Outcome(case, "skipped", [], [], "cannot mount a tmpfs here (needs root)")
    before = snapshot(work)
    args = [a.replace(MODEL, str(model_dir)) for a in case.args]
    if any(ENDPOINT in a for a in args):
        from tests.reliability.hostile_inputs import endpoint_url

        args = [a.replace(ENDPOINT, endpoint_url()) for a in args]
    cwd = os.getcwd()
    os.chdir(root)
    try:
        result = CliRunner().invoke(_main(), args, catch_exceptions=True)
    finally:
        os.chdir(cwd)
        if unmount is not None:
            after_disk = snapshot(work)
            unmount()
    after = after_disk if unmount is not None else snapshot(work)
    keep = [f"work/{k}" for k in case.keep]
    lost = [k for k, v in before.items()
            if not any(k == p or k.startswith(p + "/") for p in keep) and (k not in after or (v is not None and after[k] != v))]
    new = [k for k in after if k not in before]
    partial = [k for k in new if ".tmp-" in k or ".old-" in k or k.endswith(".tmp")]
    stderr = result.stderr if hasattr(result, "stderr") else result.output
    if result.exit_code != 0:
        out = f"work/{case.out}" if case.out else None
        partial += [k for k in new if out is not None and (k == out or k.startswith(out + "/"))]
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        kind = "traceback"
        detail = f"{type(result.exception).__name__}: {result.exception}"
    elif result.exit_code == 0:
        kind, detail = "ok", result.output.strip().splitlines()[-1][:120] if result.output.strip() else ""
    else:
        lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
        # progress bars and library warnings may come first; the error is one line, and the last
        one = sum(ln.startswith("procseq: error:") for ln in lines) == 1 and lines[-1].startswith("procseq: error:")
        usage = any(ln.startswith("Error:") for ln in lines)  # click's own: bad option value / missing argument
        kind = "clean" if (one or usage) else "unclear"
        detail = lines[-1][:400] if lines else "(nothing on stderr)"
    if case.says is not None and kind == "clean" and case.says.lower() not in detail.lower():
        kind, detail = "wrong", f"the error does not mention {case.says!r}: {detail}"
    if case.check is not None and kind in ("ok", "clean"):
        cwd = os.getcwd()
        os.chdir(root)
        try:
            problem = case.check(root)
        finally:
            os.chdir(cwd)
        if problem:
            kind, detail = "wrong", problem
    return Outcome(case, kind, lost, sorted(set(partial)), detail)


def _small_corpus(root: Path) -> None:
    """A one-sequence-per-domain corpus in root/corpus (for the training case)."""
    from procseq.data.dataset import make_corpus

    make_corpus(root / "corpus", per_domain=1, test_per_domain=1, progress=False, adapter_sizes={})


def _main():
    from procseq.cli import main

    return main


__all__ = ["Case", "Outcome", "SkipCase", "cases", "run_case"]
