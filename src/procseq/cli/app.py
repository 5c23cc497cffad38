"""`procseq app`: start the web app of the repository's ``app/`` folder on loopback and print its URL."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import click

from procseq.cli.common import MODEL_HELP, main

APP_FILE = Path(__file__).resolve().parents[3] / "app" / "app.py"


def load_app_module(path: Path = APP_FILE) -> ModuleType:
    """Import ``app/app.py`` (it lives beside the package, like FLUX's demo, and needs the ``[app]`` extra)."""
    if not path.is_file():
        raise FileNotFoundError(f"No web app at {path}: it ships in the repository's app/ folder; run procseq from "
                                "a checkout installed with `pip install -e '.[app]'`.")
    if "procseq_web_app" in sys.modules:
        return sys.modules["procseq_web_app"]
    if importlib.util.find_spec("gradio") is None:
        raise ValueError("The web app needs gradio: pip install -e '.[app]'.")
    spec = importlib.util.spec_from_file_location("procseq_web_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@main.command("app")
@click.option("--model", "-m", default="procseq-tiny", show_default=True, help=MODEL_HELP)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on (loopback: only this machine; 0.0.0.0 exposes it to the network).")
@click.option("--port", default=7860, show_default=True, type=int, help="Port (0: any free port).")
@click.option("--device", default=None, help="torch device (default: cuda if available, else cpu).")
@click.option("--max-upload-mb", default=10.0, show_default=True, type=float, help="Largest upload, in MB.")
@click.option("--max-pixels", default=16_000_000, show_default=True, type=int,
              help="Largest uploaded picture, in pixels (checked before decoding).")
@click.option("--max-queue", default=8, show_default=True, type=int, help="Requests that may wait; more are refused.")
@click.option("--concurrency", default=1, show_default=True, type=int, help="Generations run at once.")
def app_cmd(model: str, host: str, port: int, device: str | None, max_upload_mb: float, max_pixels: int,
            max_queue: int, concurrency: int) -> None:
    """Start the web app and print its URL; Ctrl+C stops it. Tabs: text to sequence (every layout, adapter mixes,
    true CFG), ReCraft from a picture, continue / fill in between known frames, tutorial, adapt the last result."""
    if min(max_upload_mb, max_pixels, max_queue, concurrency) <= 0:
        raise ValueError("--max-upload-mb, --max-pixels, --max-queue and --concurrency must be positive.")
    web = load_app_module()
    limits = web.AppLimits(max_upload_mb=max_upload_mb, max_pixels=max_pixels, max_queue=max_queue,
                           concurrency=concurrency)
    web.launch(model, host, port, limits, device)
