"""Tutorials: Markdown + self-contained HTML (every image embedded), 16 steps end to end, from a picture too."""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser

import torch
from click.testing import CliRunner
from PIL import Image

from procseq.cli import main
from procseq.conditioning.plan import Plan
from procseq.tutorial import generate_tutorial, render_html, write_tutorial


class Page(HTMLParser):
    """Collects headings, paragraphs and img sources of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.imgs, self.text, self.tag = [], [], None

    def handle_starttag(self, tag, attrs):
        self.tag = tag
        if tag == "img":
            self.imgs.append(dict(attrs))

    def handle_data(self, data):
        if self.tag in ("h1", "h2", "p") and data.strip():
            self.text.append((self.tag, data.strip()))


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    page.close()
    return page


def test_html_escapes_and_embeds() -> None:
    frames = [Image.new("RGB", (8, 8), (i * 40, 0, 0)) for i in range(3)]
    page = parse(render_html("a <b>tower</b>", ["lay <base>", "add & build", "done"], frames))
    assert ("h1", "a <b>tower</b>") in page.text and ("p", "lay <base>") in page.text
    decoded = [Image.open(io.BytesIO(base64.b64decode(i["src"].split(",", 1)[1]))) for i in page.imgs]
    assert [d.getpixel((0, 0)) for d in decoded] == [f.getpixel((0, 0)) for f in frames]


def test_sixteen_step_tutorial_end_to_end(tiny_pipe, tmp_path) -> None:
    plan = Plan("a blue lego tower", "lego", [f"place brick {i}" for i in range(16)])
    out = generate_tutorial(tiny_pipe, plan, "frame-by-frame", num_inference_steps=1,
                            generator=torch.Generator().manual_seed(0))
    folder = write_tutorial(out, tmp_path / "tut", plan, {"seed": 0})
    page = parse((folder / "tutorial.html").read_text())
    assert len(page.imgs) == 16 and all(i["src"].startswith("data:image/png;base64,") for i in page.imgs)
    heads = [t for tag, t in page.text if tag == "h2"]
    assert heads == [f"Step {i} of 16" for i in range(1, 17)]
    paragraphs = [t for tag, t in page.text if tag == "p"]
    assert paragraphs[-16:] == plan.captions  # caption, then image, in order
    md = (folder / "tutorial.md").read_text()
    assert md.startswith("# a blue lego tower") and "![Step 16: place brick 15](frame_15.png)" in md
    record = json.loads((folder / "sequence.json").read_text())
    assert record["plan"]["captions"] == plan.captions and (folder / "frame_15.png").is_file()


def test_tutorial_from_a_picture(tiny_pipe, tmp_path) -> None:
    plan = Plan("a red square", "painting", [f"step {i}" for i in range(4)])
    finished = Image.new("RGB", (16, 16), (200, 30, 30))
    for mode in ("grid", "frame-by-frame"):
        out = generate_tutorial(tiny_pipe, plan, mode, finished, num_inference_steps=1,
                                generator=torch.Generator().manual_seed(0))
        assert out.captions[0] == plan.captions and out.frames[0][-1].tobytes() == finished.tobytes()


def test_cli_tutorial(tmp_path, tiny_model_dir) -> None:
    runner = CliRunner()
    r = runner.invoke(main, ["tutorial", "show how to build a blue lego tower in 5 steps", "--steps", "1",
                             "--model", str(tiny_model_dir), "--out", str(tmp_path / "t")])
    assert r.exit_code == 0, r.output
    assert len(parse((tmp_path / "t" / "tutorial.html").read_text()).imgs) == 5
    r = runner.invoke(main, ["tutorial", "a lego tower", "--image", str(tmp_path / "missing.png"),
                             "--model", str(tiny_model_dir), "--out", str(tmp_path / "u")])
    assert r.exit_code == 2 and "No picture" in r.output and not (tmp_path / "u").exists()
