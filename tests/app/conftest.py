"""The web app on loopback for the app tests (skipped when gradio is not installed: `make test-app`)."""

from __future__ import annotations

from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "app" / "app.py"


@pytest.fixture(scope="session")
def web_module():
    """``app/app.py`` imported as a module."""
    pytest.importorskip("gradio")
    from procseq.cli.app import load_app_module

    return load_app_module(APP)


@pytest.fixture(scope="session")
def running_app(web_module, tiny_model_dir):
    """The app on the micro model at 127.0.0.1 (any free port), small limits; yields (url, engine)."""
    limits = web_module.AppLimits(max_upload_mb=1, max_pixels=1_000_000, max_queue=4)
    demo, url = web_module.launch(str(tiny_model_dir), "127.0.0.1", None, limits, "cpu", block=False)
    yield url, demo
    demo.close()
