"""The app in a real browser: playwright drives Debian's chromium through every tab once (`make test-browser`).

Each tab: fill it in as a user would, run it, check that the frames and their captions appear, and take a
screenshot into ``$PROCSEQ_SCREENSHOT_DIR`` (default: pytest's temporary folder; never the tracked tree;
``make app-screenshot`` copies one to docs/app.png). Skipped, saying why, without playwright or chromium.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.browser
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def chromium_path() -> str:
    """Debian's chromium (playwright's own browser download is never used)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("chromium is not installed (make test-browser installs Debian's: apt-get install -y chromium)")
    return path


@pytest.fixture(scope="module")
def page(web_module, tmp_path_factory):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e "
                                   "'.[browser]'; make test-browser does it)")
    binary = chromium_path()
    demo, url = web_module.launch("procseq-tiny", "127.0.0.1", None, None, "cpu", block=False)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=binary, args=ARGS, headless=True)
        tab = browser.new_page(viewport={"width": 1280, "height": 1400})
        tab.goto(url)
        tab.get_by_role("button", name="Generate", exact=True).wait_for(timeout=60_000)
        yield tab
        browser.close()
    demo.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("PROCSEQ_SCREENSHOT_DIR") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("pictures")
    first, last = folder / "first.png", folder / "last.png"
    Image.new("RGB", (64, 64), (250, 250, 250)).save(first)
    done = Image.new("RGB", (64, 64), (250, 250, 250))
    done.paste((200, 30, 30), (16, 16, 48, 48))
    done.save(last)
    return first, last


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def run_and_check(page, button: str, frames: int, shots: Path, name: str, timeout: float = 180_000) -> None:
    """Click `button`, wait for `frames` captioned frames in the visible tab, check them, take a screenshot."""
    page.get_by_role("button", name=button, exact=True).click()
    captions = page.locator("figcaption:visible")
    page.wait_for_function(f"[...document.querySelectorAll('figcaption')].filter(f => f.offsetParent).length >= "
                           f"{frames}", timeout=timeout)
    texts = captions.all_inner_texts()
    assert len(texts) >= frames and texts[0].startswith("1. ") and all(len(t) > 3 for t in texts)
    images = page.locator("figure:visible img")
    assert images.count() == len(texts)
    width = images.first.evaluate("img => img.getBoundingClientRect().width")
    assert width >= 96  # enlarged, not a 32-px thumbnail
    caption_top = captions.first.evaluate("c => c.getBoundingClientRect().top")
    image_bottom = images.first.evaluate("img => img.getBoundingClientRect().bottom")
    assert caption_top >= image_bottom - 1  # the caption is below the frame, never over it
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def test_text_to_sequence(page, shots) -> None:
    page.locator("textarea:visible").first.fill("a LEGO stairs of eight bricks, yellow and blue rows, on a blue "
                                                "baseplate")
    run_and_check(page, "Generate", 9, shots, "text-to-sequence")
    assert "lego" in page.locator("body").inner_text()


def test_recraft(page, shots, pictures) -> None:
    open_tab(page, "ReCraft (from a picture)")
    page.locator("[role=tabpanel]:visible input[type=file]").first.set_input_files(str(pictures[1]))
    page.wait_for_function("[...document.querySelectorAll('img')].filter(i => i.offsetParent && "
                           "i.closest('[role=tabpanel]')).length >= 1", timeout=60_000)
    run_and_check(page, "Recover the process", 9, shots, "recraft")


def test_continue(page, shots, pictures) -> None:
    open_tab(page, "Continue / fill in")
    inputs = page.locator("[role=tabpanel]:visible input[type=file]")
    inputs.nth(0).set_input_files([str(pictures[0])])
    inputs.nth(1).set_input_files(str(pictures[1]))
    run_and_check(page, "Generate the missing steps", 9, shots, "continue")


def test_tutorial(page, shots) -> None:
    open_tab(page, "Tutorial")
    page.locator("[role=tabpanel]:visible textarea, [role=tabpanel]:visible input[type=text]").first.fill(
        "show how to build a blue LEGO tower in 6 steps")
    run_and_check(page, "Write the tutorial", 6, shots, "tutorial")


def test_adapt(page, shots) -> None:
    open_tab(page, "Adapt the last result")
    run_and_check(page, "Adapt", 2, shots, "adapt")
    assert "adapted:" in page.locator("body").inner_text()
