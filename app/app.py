"""The procseq web app (gradio): a prompt or a picture of the finished thing in, its making out.

    procseq app                      # http://127.0.0.1:7860, the embedded procseq-tiny
    procseq app --model FOLDER       # any Flux diffusers folder (or hub id with network)

Tabs: **Text to sequence** (layout, length, adapter domains and mixes; true CFG and the negative prompt under
"Advanced"; examples per base domain), **ReCraft** (a picture of the finished thing, previewed), **Continue / fill
in** (the first steps and optionally the last one given as pictures), **Tutorial** (an instruction planned and
drawn, shown in the page and downloadable) and **Adapt the last result** (adaptive steps: insert / delete frames).
The domain is read from the prompt when left on "auto" (and shown). Every result shows the frames enlarged
(nearest neighbour) in reading order with their captions below them, the model's serpentine grid, the GIF and a
zip of the output folder. Only procseq's public API is imported.

Limits: uploads are capped in bytes (gradio's ``max_file_size``) and checked by the input policy of
:mod:`procseq.images` (format, pixel count before decoding); a bounded queue and one generation at a
time (the pipelines are not thread-safe); no request can name a server path (outputs go to per-request
folders the app owns, the oldest are deleted; gradio's own cache of uploads and results is swept every
``cache_max_age_s``). Every refusal is a readable message in the page and one line in the server log.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from procseq.sheet import enlarge


def _engine_module() -> Any:
    """``app/engine.py``, the gradio-free half of the app (loaded by path: ``app/`` is not a package)."""
    name = "procseq_web_engine"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("engine.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]


_engine = _engine_module()
AUTO, BEST, EXAMPLES, LAYOUTS = _engine.AUTO, _engine.BEST, _engine.EXAMPLES, _engine.LAYOUTS
AppLimits, Engine, infer_domain, log = _engine.AppLimits, _engine.Engine, _engine.infer_domain, _engine.log


def readable(fn: Any, *args: Any, progress: Any = None) -> Any:
    """``fn(*args)``; a user error becomes a message in the page and one log line, anything else a short
    apology in the page (the traceback only in the log)."""
    def on_step(done: int, total: int) -> None:
        if progress is not None:
            progress((done, total), desc="denoising", unit="steps")

    try:
        return fn(*args, on_step=on_step)
    except (ValueError, FileNotFoundError) as err:
        message = " ".join(str(err).split())
        log.warning("refused: %s", message)
        raise quiet_error(message) from None
    except Exception:  # never a stack trace in the page
        log.exception("generation failed")
        raise quiet_error("The generation failed unexpectedly; the server log has the details.") from None


def quiet_error(message: str) -> gr.Error:
    """A ``gr.Error`` that gradio does not print a traceback for (the app logs one line itself)."""
    try:
        return gr.Error(message, print_exception=False)
    except TypeError:  # gradio before print_exception
        return gr.Error(message)


def settings(engine: Engine, frames: int, with_domain: bool = True, auto: bool = True) -> list[Any]:
    """The domain, frames, seed and steps inputs of one tab."""
    d = engine.pipe.defaults
    with gr.Row():
        domain = gr.Dropdown(([AUTO] if auto else []) + engine.domains, value=AUTO if auto else engine.domains[0],
                             label="Domain (adapter domains included)", visible=with_domain)
        count = gr.Slider(2, max(d.max_frames, engine.limits.max_frames), value=min(frames, d.max_frames), step=1,
                          label="Frames (steps)")
        seed = gr.Number(0, precision=0, label="Seed")
        steps = gr.Slider(1, engine.limits.max_steps, value=min(d.num_inference_steps, engine.limits.max_steps),
                          step=1, label="Denoising steps")
    return [domain, count, seed, steps]


def picture_input(label: str) -> gr.File:
    """An upload box for one picture (a file, so that procseq's input policy, not gradio, decodes it)."""
    return gr.File(label=label, file_types=[".png", ".jpg", ".jpeg", ".webp"], type="filepath")


def previewed(engine: Engine, upload: gr.File) -> gr.Image:
    """A preview of `upload`, shown once procseq's input policy accepts it (a refusal is a message at once)."""
    preview = gr.Image(label="Preview", type="pil", height=200, interactive=False)

    def show(path: str | None) -> Image.Image | None:
        if not path:
            return None
        picture = readable(lambda on_step: engine.picture(path, "a picture"))
        return enlarge(picture, max(1, -(-192 // max(picture.size))))  # small pictures shown enlarged

    upload.change(show, upload, preview, api_name=False)
    return preview


def output_panel() -> list[Any]:
    """The frames (enlarged, captions below, reading order), grid, GIF, zip and status outputs of one tab."""
    status = gr.Markdown()
    sheet = gr.HTML(label="Frames (reading order)")
    with gr.Accordion("The grid, the GIF and the download", open=False):
        with gr.Row():
            grid = gr.Image(label="Grid as the model sees it (serpentine: every other row runs right to left)",
                            type="pil", format="png", height=288)
            gif = gr.Image(label="GIF", type="filepath", height=288)
        archive = gr.File(label="Download the output folder (zip: frames, grid, GIF, sequence.png, sequence.json)")
    return [sheet, grid, gif, archive, status]


def build_app(engine: Engine) -> gr.Blocks:
    """The gradio Blocks of the app for `engine` (queue and limits applied)."""
    lim = engine.limits
    age = lim.cache_max_age_s
    with gr.Blocks(title="procseq", delete_cache=(age, age)) as demo:  # gradio's cache stays bounded
        last = gr.State(None)  # the folder of this session's last result (the Adapt tab edits it)
        gr.Markdown(f"# procseq\nThe step-by-step making of a thing, from a prompt or a picture of the finished "
                    f"thing. Model: `{engine.model}`.")
        with gr.Tab("Text to sequence"):
            prompt = gr.Textbox(label="The finished artifact", lines=2, value=EXAMPLES["painting"][0])
            layout = gr.Radio(LAYOUTS, value=BEST, label="Layout: one grid (MakeAnything), a region per step "
                              "(CookAnything) or one frame at a time (Loom; any length); auto: the grid when the "
                              "steps fit it, else frame by frame")
            domain, frames, seed, steps = settings(engine, 9)
            with gr.Accordion("Advanced: true CFG, negative prompt, adapter mix", open=False):
                cfg = gr.Slider(1, 10, value=engine.pipe.defaults.true_cfg_scale, step=0.5,
                                label="True CFG scale (1 = off; > 1 doubles the compute)")
                negative = gr.Textbox(label="Negative prompt (with true CFG > 1)")
                mix = gr.Textbox(label="Adapter mix instead of the domain, e.g. clay=0.5,lego=0.5")
            button = gr.Button("Generate", variant="primary")
            gr.Examples([[p, d, n] for d, (p, n) in EXAMPLES.items() if d in engine.domains],
                        [prompt, domain, frames], label="Examples, one per base domain")
            outputs = output_panel()
            def text_handler(prompt: str, domain: str, mode: str, frames: float, seed: float, steps: float,
                             cfg: float, negative: str, mix: str, progress: Any = gr.Progress()) -> tuple[Any, ...]:
                return readable(engine.text_to_sequence, prompt, domain, mode, frames, seed, steps, cfg, negative,
                                mix, progress=progress)

            button.click(text_handler, [prompt, domain, layout, frames, seed, steps, cfg, negative, mix], [*outputs, last],
                         api_name="generate")
        with gr.Tab("ReCraft (from a picture)"):
            with gr.Row():
                upload = picture_input(f"Picture of the finished artifact (PNG, JPEG or WebP, up to "
                                       f"{lim.max_upload_mb:g} MB and {lim.max_pixels / 1e6:g} megapixels)")
                previewed(engine, upload)
            domain, frames, seed, steps = settings(engine, 9, auto=False)
            button = gr.Button("Recover the process", variant="primary")
            outputs = output_panel()
            def recraft_handler(upload: str | None, domain: str, frames: float, seed: float, steps: float,
                                progress: Any = gr.Progress()) -> tuple[Any, ...]:
                return readable(engine.recraft_sequence, upload, domain, frames, seed, steps, progress=progress)

            button.click(recraft_handler, [upload, domain, frames, seed, steps], [*outputs, last], api_name="recraft")
        with gr.Tab("Continue / fill in"):
            gr.Markdown("Give the first step(s) as pictures to continue a half-finished work, and/or the last step "
                        "to fill in the steps between.")
            prompt = gr.Textbox(label="The finished artifact", lines=1, value=EXAMPLES["painting"][0])
            with gr.Row():
                firsts = gr.File(label="First step(s), in order", file_count="multiple", type="filepath",
                                 file_types=[".png", ".jpg", ".jpeg", ".webp"])
                final = picture_input("Last step (optional)")
                previewed(engine, final)
            domain, frames, seed, steps = settings(engine, 9)
            button = gr.Button("Generate the missing steps", variant="primary")
            outputs = output_panel()
            def continue_handler(prompt: str, domain: str, firsts: list[str] | None, final: str | None,
                                 frames: float, seed: float, steps: float,
                                 progress: Any = gr.Progress()) -> tuple[Any, ...]:
                return readable(engine.continue_sequence, prompt, domain, firsts, final, frames, seed, steps,
                                progress=progress)

            button.click(continue_handler, [prompt, domain, firsts, final, frames, seed, steps], [*outputs, last], api_name="continue")
        with gr.Tab("Tutorial"):
            instruction = gr.Textbox(label="What to teach", value="show how to build a blue LEGO tower in 6 steps")
            with gr.Row():
                layout = gr.Radio(LAYOUTS, value=BEST, label="Layout")
                count = gr.Number(0, precision=0, label="Steps (0: read from the instruction)")
                seed = gr.Number(0, precision=0, label="Seed")
                steps = gr.Slider(1, lim.max_steps, value=min(engine.pipe.defaults.num_inference_steps,
                                                              lim.max_steps), step=1, label="Denoising steps")
            button = gr.Button("Write the tutorial", variant="primary")
            status = gr.Markdown()
            page = gr.HTML(label="Tutorial")
            with gr.Row():
                html_file = gr.File(label="tutorial.html (images embedded)")
                archive = gr.File(label="The tutorial folder (zip: tutorial.md, frames, sequence.png)")
            def tutorial_handler(instruction: str, mode: str, count: float, seed: float, steps: float,
                                 progress: Any = gr.Progress()) -> tuple[Any, ...]:
                return readable(engine.tutorial, instruction, mode, count, seed, steps, progress=progress)

            button.click(tutorial_handler, [instruction, layout, count, seed, steps], [page, html_file, archive, status, last],
                         api_name="tutorial")
        with gr.Tab("Adapt the last result"):
            gr.Markdown("Adaptive steps (ProcessMaker) on this session's last result: a frame is inserted where a "
                        "step is missing, one is removed where a step repeats. The calibrated rule uses thresholds "
                        "measured on the training split (as `procseq adapt`); the sequence rule inserts where "
                        "neighbours differ by more than mu + k_add sigma and removes below mu - k_del sigma.")
            with gr.Row():
                rule = gr.Radio(["calibrated", "sequence"], value="calibrated", label="Rule")
                k_add = gr.Slider(0, 4, value=2.0, step=0.1, label="k_add (insert)")
                k_del = gr.Slider(0, 4, value=1.5, step=0.1, label="k_del (delete)")
                rounds = gr.Slider(1, 5, value=3, step=1, label="Rounds")
                interpolator = gr.Radio(["auto", "sequence", "model", "average"], value="auto",
                                        label="Inserted frames (auto: the one the calibration chose for the domain; "
                                              "sequence: every frame known, the gap free; model: from both "
                                              "neighbours; average: their pixel average)")
                seed = gr.Number(0, precision=0, label="Seed")
            button = gr.Button("Adapt", variant="primary")
            outputs = output_panel()
            def adapt_handler(folder: str | None, rule: str, k_add: float, k_del: float, rounds: float,
                              interpolator: str, seed: float, progress: Any = gr.Progress()) -> tuple[Any, ...]:
                return readable(engine.adapt, folder, k_add, k_del, rounds, interpolator, seed, rule,
                                progress=progress)

            button.click(adapt_handler, [last, rule, k_add, k_del, rounds, interpolator, seed], [*outputs, last],
                         api_name="adapt")
    demo.queue(max_size=lim.max_queue, default_concurrency_limit=lim.concurrency)
    return demo


def launch(model: str = "procseq-tiny", host: str = "127.0.0.1", port: int | None = 7860,
           limits: AppLimits | None = None, device: str | None = None, block: bool = True) -> tuple[gr.Blocks, str]:
    """Load the model, start the app on `host`:`port` (None or 0: the first free port from 7860) and return
    (app, URL); `block` serves until stopped. ``app.engine`` is the :class:`Engine`."""
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
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
