"""The app in a real headless browser: load the page, run one generation, screenshot it (`make test-browser`)."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.app.browser import Chromium

pytestmark = pytest.mark.browser
CLICK = "[...document.querySelectorAll('button')].find(b => b.textContent.trim() === 'Generate').click() || true"
DONE = "document.body.innerText.includes('frames of') && document.querySelectorAll('img').length >= 9"


def test_page_generates_and_the_screenshot_is_not_blank(web_module, tmp_path) -> None:
    if shutil.which("chromium") is None and shutil.which("chromium-browser") is None:
        pytest.skip("chromium is not installed (make test-browser installs it)")
    demo, url = web_module.launch("procseq-tiny", "127.0.0.1", None, None, "cpu", block=False)
    browser = Chromium()
    try:
        browser.send("Page.navigate", url=url)
        browser.wait_for("[...document.querySelectorAll('button')].some(b => b.textContent.trim() === 'Generate')")
        browser.evaluate(CLICK)
        browser.wait_for(DONE, timeout=120)
        png = browser.screenshot()
    finally:
        browser.close()
        demo.close()
    shot = Image.open(io.BytesIO(png)).convert("RGB")
    pixels = np.asarray(shot)
    assert shot.size[0] >= 1000 and pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200
    (tmp_path / "app.png").write_bytes(png)
    if os.environ.get("PROCSEQ_SCREENSHOT"):  # make test-browser keeps it for the README
        Path(os.environ["PROCSEQ_SCREENSHOT"]).write_bytes(png)
