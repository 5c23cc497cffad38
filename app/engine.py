"""The web app's engine: the loaded pipelines and what each tab does with them, without gradio (``app/app.py``
is the page). Every method validates its inputs (``ValueError`` with the fix) and returns the values of its tab's
output components. Only procseq's public API is imported.
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

import torch
from PIL import Image

from procseq import Sequence, load_pipeline, load_recraft_pipeline
from procseq.cli.common import parse_mix
from procseq.images import open_image
from procseq.limits import max_frames
from procseq.planning import instruction_domain, plan_instruction
from procseq.planning.vocabulary import unknown_words_note
from procseq.progress import show_progress
from procseq.sheet import enlarge, sequence_html, write_sequence_folder
from procseq.tutorial import best_layout, write_tutorial

log = logging.getLogger("procseq.app")
AUTO = "auto (from the prompt)"
BEST = "auto (best for the length)"
LAYOUTS = [BEST, "grid", "regional", "frame-by-frame"]
EXAMPLES = {  # one prompt per base domain of procseq-tiny, in the corpus's words (the model knows these)
    "painting": ("a painting of an orange star on the right under a sunset sky above snow, with a sun", 9),
    "line_drawing": ("an orange ink line drawing of a house in the center with three hatching lines, a ground line "
                     "and a bird", 9),
    "lego": ("a LEGO stairs of eight bricks, yellow and blue rows, on a blue baseplate", 9),
    "pixel_art": ("pixel art of an orange ghost on a black background", 9),
    "cooking": ("three yellow cheese cooked until orange and served on a white plate with a garnish", 4),
    "emoji": ("a surprised green square emoji wearing a brown scarf", 4),
}


@dataclass
class AppLimits:
    """What one request may ask for and how many may wait."""

    max_upload_mb: float = 10.0
    max_pixels: int = 16_000_000
    max_queue: int = 8
    concurrency: int = 1
    max_steps: int = 50
    max_frames: int = 24
    keep_outputs: int = 32
    cache_max_age_s: int = 600
    """gradio's own copies of uploads and results (its cache) older than this are deleted, checked as often."""


def infer_domain(prompt: str, domains: list[str]) -> str:
    """The domain a prompt is about, among `domains` (the one place the app guesses it; procseq's planner reads
    the words, see :func:`procseq.planning.instruction_domain`)."""
    try:
        return instruction_domain(prompt, domains)
    except ValueError:  # none of the model's domains is a corpus domain: the model's first
        return domains[0]


class Engine:
    """The loaded pipelines (ReCraft on first use), a lock around them, and the folder of outputs."""

    def __init__(self, model: str = "procseq-tiny", device: str | None = None, limits: AppLimits | None = None):
        self.model, self.device, self.limits = model, device, limits or AppLimits()
        self.pipe = load_pipeline(model, device=device)
        self.pipe.set_progress_bar_config(disable=True)
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
            self._recraft.set_progress_bar_config(disable=True)
        return self._recraft

    def new_output_dir(self) -> Path:
        """A fresh folder for one request's files; the oldest beyond ``keep_outputs`` are deleted."""
        old = sorted(self.root.iterdir(), key=lambda p: p.stat().st_mtime)
        for p in old[: max(0, len(old) - self.limits.keep_outputs + 1)]:
            shutil.rmtree(p, ignore_errors=True)
        out = self.root / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        out.mkdir()
        return out

    def domain(self, choice: str | None, prompt: str) -> tuple[str, str]:
        """(domain, how it was chosen): the user's choice, or read from `prompt` on "auto"."""
        if choice in (None, "", AUTO):
            return infer_domain(prompt or "", self.domains), "read from the prompt"
        if choice not in self.domains:
            raise ValueError(f"Unknown domain {choice!r}; pick one of: {', '.join(self.domains)}.")
        return choice, "chosen"

    def layout(self, mode: str | None, frames: float) -> str:
        """The layout: the user's choice, or on "auto" the best for the length (:func:`procseq.tutorial.best_layout`,
        the choice ``procseq tutorial`` makes too)."""
        return best_layout(int(frames), self.pipe.defaults.max_frames) if mode in (None, "", BEST) else mode

    def check(self, frames: float, steps: float, mode: str = "grid") -> tuple[int, int]:
        """Validate the shared settings; returns (frames, steps) as ints."""
        frames, steps = int(frames), int(steps)
        if mode not in LAYOUTS[1:]:
            raise ValueError(f"Unknown layout {mode!r}; pick one of: {', '.join(LAYOUTS[1:])}.")
        top = self.pipe.defaults.max_frames if mode == "grid" else min(max_frames(mode), self.limits.max_frames)
        if not 2 <= frames <= top:
            raise ValueError(f"Frames must be between 2 and {top} in the {mode} layout, got {frames}"
                             + ("; pick the regional or frame-by-frame layout for more." if mode == "grid" else "."))
        if not 1 <= steps <= self.limits.max_steps:
            raise ValueError(f"Steps must be between 1 and {self.limits.max_steps}, got {steps}.")
        return frames, steps

    def picture(self, upload: str | None, what: str) -> Image.Image:
        """An uploaded picture through procseq's input policy (messages name the upload, never a server path)."""
        if not upload:
            raise ValueError(f"Upload {what} (PNG, JPEG or WebP) first.")
        path = Path(upload)
        try:
            return open_image(path, max_pixels=self.limits.max_pixels)
        except (ValueError, FileNotFoundError) as err:
            raise ValueError(str(err).replace(str(path), "The uploaded file")) from None

    def run(self, fn: Any, *args: Any, passes: int | None = 1, on_step: Any = None, **kwargs: Any) -> Any:
        """`fn(*args, **kwargs)` under the lock, reporting its denoising steps to `on_step(done, total)`."""
        with self.lock, show_progress(passes=passes, on_step=on_step, bar=False):
            return fn(*args, **kwargs)

    def finish(self, seq: Sequence, grid: Image.Image | None, seconds: float, note: str,
               extra: dict[str, Any]) -> tuple[Any, ...]:
        """Write the output folder and its zip; the values of the output components."""
        out = self.new_output_dir()
        folder = write_sequence_folder(seq, out / "sequence", grid, {"model": self.model, **extra})
        archive = shutil.make_archive(str(out / "procseq-sequence"), "zip", folder)
        factor = max(1, -(-192 // seq.frames[0].width))  # shown at least 192 px wide
        big = [enlarge(f, factor) for f in seq.frames]
        preview = out / "preview.gif"  # the download keeps the native size; the page shows it enlarged
        big[0].save(preview, save_all=True, append_images=big[1:], duration=600, loop=0)
        grid_image = Image.open(folder / "grid.png")
        status = f"{seq.num_frames} frames of **{seq.domain}** ({note}) in {seconds:.2f} s."
        return (sequence_html(seq.frames, seq.captions, seq.prompt), enlarge(grid_image, factor), str(preview),
                archive, status, str(folder))

    def from_output(self, result: Any, prompt: str, domain: str, note: str, extra: dict[str, Any]) -> tuple[Any, ...]:
        """:meth:`finish` for a pipeline's ``SequenceOutput``."""
        seconds = result.metadata[0].get("timings_s", {}).get("total", float("nan"))
        seq = result.sequences([prompt], domain)[0]
        notes = [unknown_words_note(result.plans, self.model, domain),  # words the model cannot know, if any
                 (result.plans[0].meta.get("note") if result.plans else None)]  # a picture it could not read
        note += "".join(f"; {n.removeprefix('procseq: ').rstrip('.')}" for n in notes if n)
        return self.finish(seq, result.grid[0], seconds, note, extra)

    def text_to_sequence(self, prompt: str, domain: str, mode: str, frames: float, seed: float, steps: float,
                         true_cfg: float, negative: str, mix: str, on_step: Any = None) -> tuple[Any, ...]:
        """Generate from a prompt (the "Text to sequence" tab)."""
        if not (prompt or "").strip():
            raise ValueError("Describe the finished artifact first, e.g. 'a red lego house'.")
        mode = self.layout(mode, frames)
        frames_i, steps_i = self.check(frames, steps, mode)
        weights = parse_mix(mix)
        name, how = self.domain(domain, prompt)
        how += f"; adapters mixed {mix.strip()}" if weights else ""
        result = self.run(self.pipe, prompt, domain=name, frames=frames_i, num_inference_steps=steps_i, mode=mode,
                          true_cfg_scale=float(true_cfg), negative_prompt=negative or "", adapter_weights=weights,
                          generator=torch.Generator("cpu").manual_seed(int(seed)),
                          passes=frames_i if mode == "frame-by-frame" else 1, on_step=on_step)
        return self.from_output(result, prompt, name, f"{how}, {mode} layout, seed {int(seed)}",
                                {"seed": int(seed), "mode": mode})

    def recraft_sequence(self, upload: str | None, domain: str, frames: float, seed: float, steps: float,
                         on_step: Any = None) -> tuple[Any, ...]:
        """Generate the process that ends in the uploaded picture (the "ReCraft" tab)."""
        frames_i, steps_i = self.check(frames, steps)
        image = self.picture(upload, "a picture of the finished artifact")
        name = self.domains[0] if domain in (None, "", AUTO) else self.domain(domain, "")[0]
        result = self.run(lambda: self.recraft(image, domain=name, frames=frames_i, num_inference_steps=steps_i,
                                               generator=torch.Generator("cpu").manual_seed(int(seed))),
                          passes=None, on_step=on_step)
        return self.from_output(result, f"ReCraft of {Path(upload or '').name}", name, f"ReCraft, seed {int(seed)}",
                                {"seed": int(seed)})

    def continue_sequence(self, prompt: str, domain: str, firsts: list[str] | None, last: str | None, frames: float,
                          seed: float, steps: float, on_step: Any = None) -> tuple[Any, ...]:
        """Continue from the first steps, or fill in between them and the last one (the "Continue" tab)."""
        if not (prompt or "").strip():
            raise ValueError("Describe the finished artifact first, e.g. 'a red lego house'.")
        frames_i, steps_i = self.check(frames, steps)
        known = {i: self.picture(p, f"first step {i + 1}") for i, p in enumerate(firsts or [])}
        if last:
            known[frames_i - 1] = self.picture(last, "the last step")
        if not known:
            raise ValueError("Upload the first step(s) and/or the last step as pictures first.")
        if len(known) >= frames_i:
            raise ValueError(f"{len(known)} pictures leave nothing to generate in {frames_i} frames; "
                             "ask for more frames.")
        name, how = self.domain(domain, prompt)
        result = self.run(self.pipe, prompt, domain=name, frames=frames_i, num_inference_steps=steps_i, known=known,
                          generator=torch.Generator("cpu").manual_seed(int(seed)), on_step=on_step)
        given = ", ".join(str(i + 1) for i in sorted(known))
        return self.from_output(result, prompt, name, f"{how}; steps {given} given", {"seed": int(seed)})

    def tutorial(self, instruction: str, mode: str, count: float, seed: float, steps: float,
                 on_step: Any = None) -> tuple[Any, ...]:
        """Plan an instruction and draw every step (the "Tutorial" tab); the page and tutorial.html to download."""
        if not (instruction or "").strip():
            raise ValueError("Say what to make first, e.g. 'show how to build a blue LEGO tower in 6 steps'.")
        plan = plan_instruction(instruction, num_steps=int(count) or None, domains=self.domains)
        mode = self.layout(mode, plan.num_steps)
        self.check(plan.num_steps, steps, mode)
        start = time.perf_counter()
        result = self.run(self.pipe, plan=plan, mode=mode, num_inference_steps=int(steps),
                          generator=torch.Generator("cpu").manual_seed(int(seed)),
                          passes=plan.num_steps if mode == "frame-by-frame" else 1, on_step=on_step)
        out = self.new_output_dir()
        folder = write_tutorial(result, out / "tutorial", plan, {"seed": int(seed), "model": self.model})
        archive = shutil.make_archive(str(out / "procseq-tutorial"), "zip", folder)
        page = sequence_html(result.frames[0], result.captions[0], plan.title)
        status = (f"A {plan.num_steps}-step tutorial of **{plan.domain}** (read from the instruction), {mode} "
                  f"layout, in {time.perf_counter() - start:.2f} s.")
        return page, str(folder / "tutorial.html"), archive, status, str(folder)

    def adapt(self, folder: str | None, k_add: float, k_del: float, rounds: float, interpolator: str, seed: float,
              rule: str = "calibrated", on_step: Any = None) -> tuple[Any, ...]:
        """Adaptive steps on the last result: insert where a step is missing, delete where one repeats (`rule`:
        ``calibrated``, the training split's thresholds as `procseq adapt` uses them, or ``sequence``, mu +/- k
        sigma with `k_add` / `k_del`)."""
        from procseq.cli.adapt import adaptive_config, make_interpolator, with_calibration
        from procseq.models.features import load_feature_extractor
        from procseq.pipelines.adaptive import adapt_sequence

        if not folder or not Path(folder).is_dir() or self.root not in Path(folder).parents:
            raise ValueError("Make a sequence in another tab first; this tab edits the last result.")
        seq = Sequence.load(folder)
        if rule not in ("calibrated", "sequence"):
            raise ValueError(f"Unknown rule {rule!r}; use calibrated or sequence.")
        config = with_calibration(adaptive_config(alpha=0.4, beta=0.4, k_add=float(k_add), k_del=float(k_del),
                                                  max_rounds=int(rounds), min_frames=2, max_frames=None),
                                  self.pipe, None, rule)
        start = time.perf_counter()
        with self.lock, show_progress(passes=None, on_step=on_step, bar=False):
            interp = make_interpolator(interpolator, self.pipe, seq.prompt, seq.domain, config.calibration)
            out = adapt_sequence(seq, load_feature_extractor(self.pipe, None), interp, config, int(seed))
        rec = out.meta["adaptive"]
        note = f"adapted: {rec['inserted']} inserted, {rec['deleted']} deleted, stopped: {rec['stopped']}"
        return self.finish(out, None, time.perf_counter() - start, note, {})
