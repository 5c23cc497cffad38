"""The procseq web app (gradio): a prompt or a picture of the finished thing in, its making out.

    procseq app                      # http://127.0.0.1:7860, the embedded procseq-tiny
    procseq app --model FOLDER       # any Flux diffusers folder (or hub id with network)

Tabs: **Text to sequence** and **ReCraft** (upload a picture of the finished artifact), each with the
domain, number of frames, seed and denoising steps; a progress bar; the grid, the frames as a gallery
with their captions, the GIF and a zip of the output folder. Only procseq's public API is imported.

Limits: uploads are capped in bytes (gradio's ``max_file_size``) and checked by the input policy of
:mod:`procseq.images` (format, pixel count before decoding); a bounded queue and one generation at a
time (the pipelines are not thread-safe); no request can name a server path (outputs go to per-request
folders the app owns, the oldest are deleted; gradio's own cache of uploads and results is swept every
``cache_max_age_s``). Every refusal is a readable message in the page.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import torch
from PIL import Image

from procseq.batch import save_sequence_folder
from procseq.images import open_image
from procseq.pipelines.loading import load_pipeline
from procseq.pipelines.image_to_sequence import load_recraft_pipeline
from procseq.planning.vocabulary import unknown_words_note
from procseq.tutorial import best_layout

log = logging.getLogger("procseq.app")


@dataclass
class AppLimits:
    """What one request may ask for and how many may wait."""

    max_upload_mb: float = 10.0
    max_pixels: int = 16_000_000
    max_queue: int = 8
    concurrency: int = 1
    max_steps: int = 50
    keep_outputs: int = 32
    cache_max_age_s: int = 600
    """gradio's own copies of uploads and results (its cache) older than this are deleted, checked as often."""


class Engine:
    """The loaded pipelines (ReCraft on first use), a lock around them, and the folder of outputs."""

    def __init__(self, model: str = "procseq-tiny", device: str | None = None, limits: AppLimits | None = None):
        self.model, self.device, self.limits = model, device, limits or AppLimits()
        self.pipe = load_pipeline(model, device=device)
        self._recraft: Any = None
        self.lock = threading.Lock()
        self.root = Path(tempfile.mkdtemp(prefix="procseq-app-"))

    @property
    def domains(self) -> list[str]:
        """The domains the model (and its adapters) know."""
        return list(self.pipe.known_domains) or ["painting"]

    @property
    def recraft(self) -> Any:
        """The ReCraft pipeline (loaded on first use)."""
        if self._recraft is None:
            self._recraft = load_recraft_pipeline(self.model, device=self.device)
        return self._recraft

    def new_output_dir(self) -> Path:
        """A fresh folder for one request's files; the oldest beyond ``keep_outputs`` are deleted."""
        old = sorted(self.root.iterdir(), key=lambda p: p.stat().st_mtime)
        for p in old[: max(0, len(old) - self.limits.keep_outputs + 1)]:
            shutil.rmtree(p, ignore_errors=True)
        out = self.root / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        out.mkdir()
        return out

    def check(self, domain: str, frames: float, steps: float) -> tuple[int, int]:
        """Validate the shared settings; returns (frames, steps) as ints."""
        if domain not in self.domains:
            raise ValueError(f"Unknown domain {domain!r}; pick one of: {', '.join(self.domains)}.")
        frames, steps = int(frames), int(steps)
        if not 2 <= frames <= self.pipe.defaults.max_frames:
            raise ValueError(f"Frames must be between 2 and {self.pipe.defaults.max_frames}, got {frames}.")
        if not 1 <= steps <= self.limits.max_steps:
            raise ValueError(f"Steps must be between 1 and {self.limits.max_steps}, got {steps}.")
        return frames, steps

    def finish(self, result: Any, prompt: str, domain: str, seed: int, out: Path) -> tuple[Any, ...]:
        """Write the output folder and its zip; the values of the output components."""
        folder = save_sequence_folder(result, prompt, domain, out / "sequence", {"seed": seed, "model": self.model})
        archive = shutil.make_archive(str(out / "procseq-sequence"), "zip", folder)
        frames = [upscaled(f) for f in result.frames[0]]
        gallery = [(f, f"{i + 1}. {c}") for i, (f, c) in enumerate(zip(frames, result.captions[0]))]
        preview = out / "preview.gif"  # the download keeps the native size; the page shows it enlarged
        frames[0].save(preview, save_all=True, append_images=frames[1:], duration=600, loop=0)
        seconds = result.metadata[0].get("timings_s", {}).get("total", float("nan"))
        status = f"{len(gallery)} frames of **{domain}** in {seconds:.2f} s (seed {seed})."
        notes = [unknown_words_note(result.plans, self.model, domain),
                 (result.plans[0].meta.get("note") if result.plans else None)]
        status += "".join(f" {n.removeprefix('procseq: ')}." for n in notes if n)
        return upscaled(result.grid[0], 288), gallery, str(preview), archive, status

    def text_to_sequence(self, prompt: str, domain: str, frames: float, seed: float, steps: float) -> tuple[Any, ...]:
        """Generate from a prompt (the "Text to sequence" tab)."""
        frames_i, steps_i = self.check(domain, frames, steps)
        if not (prompt or "").strip():
            raise ValueError("Describe the finished artifact first, e.g. 'a red lego house'.")
        with self.lock:
            result = self.pipe(prompt, domain=domain, frames=frames_i, num_inference_steps=steps_i,
                               mode=best_layout(frames_i, self.pipe.defaults.max_frames),
                               generator=torch.Generator("cpu").manual_seed(int(seed)))
        return self.finish(result, prompt, domain, int(seed), self.new_output_dir())

    def recraft_sequence(self, upload: str | None, domain: str, frames: float, seed: float,
                         steps: float) -> tuple[Any, ...]:
        """Generate the process that ends in the uploaded picture (the "ReCraft" tab)."""
        frames_i, steps_i = self.check(domain, frames, steps)
        if not upload:
            raise ValueError("Upload a picture of the finished artifact (PNG, JPEG or WebP) first.")
        path = Path(upload)
        try:
            image = open_image(path, max_pixels=self.limits.max_pixels)
        except (ValueError, FileNotFoundError) as err:  # the message names the upload, not the server folder
            raise ValueError(str(err).replace(str(path), "The uploaded file")) from None
        with self.lock:
            pipe = self.recraft
            result = pipe(image, domain=domain, frames=frames_i, num_inference_steps=steps_i,
                          generator=torch.Generator("cpu").manual_seed(int(seed)))
        return self.finish(result, f"ReCraft of {path.name}", domain, int(seed), self.new_output_dir())


def upscaled(image: Image.Image, min_side: int = 192) -> Image.Image:
    """`image` enlarged by a whole factor (nearest neighbour) to at least `min_side` pixels, for display."""
    factor = max(1, -(-min_side // min(image.size)))
    return image.resize((image.width * factor, image.height * factor), Image.NEAREST) if factor > 1 else image


def readable(fn: Any, *args: Any) -> Any:
    """``fn(*args)``; user errors become a message in the page, anything else a short apology (logged)."""
    try:
        return fn(*args)
    except (ValueError, FileNotFoundError) as err:
        raise gr.Error(str(err)) from None
    except Exception:  # never a stack trace in the page
        log.exception("generation failed")
        raise gr.Error("The generation failed unexpectedly; the server log has the details.") from None


def settings_row(engine: Engine, default_frames: int) -> list[Any]:
    """The domain, frames, seed and steps inputs of one tab."""
    d = engine.pipe.defaults
    with gr.Row():
        domain = gr.Dropdown(engine.domains, value=engine.domains[0], label="Domain")
        frames = gr.Slider(2, d.max_frames, value=min(default_frames, d.max_frames), step=1, label="Frames")
        seed = gr.Number(0, precision=0, label="Seed")
        steps = gr.Slider(1, engine.limits.max_steps, value=min(d.num_inference_steps, engine.limits.max_steps),
                          step=1, label="Denoising steps")
    return [domain, frames, seed, steps]


def output_panel() -> list[Any]:
    """Status, grid, gallery, GIF and zip outputs of one tab."""
    status = gr.Markdown()
    with gr.Row():
        grid = gr.Image(label="Grid (serpentine order)", type="pil", format="png", height=320)
        gif = gr.Image(label="GIF", type="filepath", height=320)
    gallery = gr.Gallery(label="Frames", columns=9, height=200, object_fit="contain")
    archive = gr.File(label="Download the output folder (zip)")
    return [grid, gallery, gif, archive, status]


def build_app(engine: Engine) -> gr.Blocks:
    """The gradio Blocks of the app for `engine` (queue and limits applied)."""
    def text_handler(prompt: str, domain: str, frames: float, seed: float, steps: float,
                     progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple[Any, ...]:
        return readable(engine.text_to_sequence, prompt, domain, frames, seed, steps)

    def recraft_handler(upload: str | None, domain: str, frames: float, seed: float, steps: float,
                        progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple[Any, ...]:
        return readable(engine.recraft_sequence, upload, domain, frames, seed, steps)

    age = engine.limits.cache_max_age_s
    with gr.Blocks(title="procseq", delete_cache=(age, age)) as demo:  # gradio's cache stays bounded
        gr.Markdown(f"# procseq\nThe step-by-step making of a thing, from a prompt or a picture of the finished "
                    f"thing. Model: `{engine.model}`.")
        with gr.Tab("Text to sequence"):
            prompt = gr.Textbox(label="The finished artifact", lines=2,
                                value="a painting of a red star on the left under a sunset sky above sand, with a sun")
            settings = settings_row(engine, 9)
            button = gr.Button("Generate", variant="primary")
            outputs = output_panel()
            button.click(text_handler, [prompt, *settings], outputs, api_name="generate")
        with gr.Tab("ReCraft (from a picture)"):
            upload = gr.File(label=f"Picture of the finished artifact (PNG, JPEG or WebP, up to "
                                   f"{engine.limits.max_upload_mb:g} MB and {engine.limits.max_pixels / 1e6:g} "
                                   f"megapixels)", file_types=[".png", ".jpg", ".jpeg", ".webp"], type="filepath")
            settings = settings_row(engine, 9)
            button = gr.Button("Recover the process", variant="primary")
            outputs = output_panel()
            button.click(recraft_handler, [upload, *settings], outputs, api_name="recraft")
        # --- To come (issue #16, design decisions 10 and 12): known-frame continuation (the first k frames
        # uploaded, the rest generated) and tutorial mode (interleaved text and images) get their own tabs
        # here once procseq.conditioning.frames and procseq.tutorial exist; `mode` (grid | regional |
        # frame-by-frame) joins settings_row when the pipeline takes it.
    demo.queue(max_size=engine.limits.max_queue, default_concurrency_limit=engine.limits.concurrency)
    return demo


def launch(model: str = "procseq-tiny", host: str = "127.0.0.1", port: int | None = 7860,
           limits: AppLimits | None = None, device: str | None = None, block: bool = True) -> tuple[gr.Blocks, str]:
    """Load the model, start the app on `host`:`port` (None or 0: the first free port from 7860) and return
    (app, URL); `block` serves until stopped. ``app.engine`` is the :class:`Engine`."""
    engine = Engine(model, device, limits)
    demo = build_app(engine)
    demo.engine = engine
    demo.launch(server_name=host, server_port=port or None, max_file_size=int(engine.limits.max_upload_mb * 1024 * 1024),
                allowed_paths=[str(engine.root)], prevent_thread_lock=True, quiet=True, show_error=True)
    url = f"http://{host}:{demo.server_port}/"
    if block:
        print(f"procseq app: {url}  (Ctrl+C to stop)", flush=True)
        try:
            demo.block_thread()
        finally:
            shutil.rmtree(engine.root, ignore_errors=True)
    return demo, url


if __name__ == "__main__":
    launch()
