"""The web app as a user drives it, through gradio_client against the running server on loopback."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")


@pytest.fixture(scope="module")
def client(running_app):
    return gradio_client.Client(running_app[0], verbose=False)


def generate(client, *args, api_name="/generate"):
    return client.predict(*args, api_name=api_name)


def text(client, prompt="a red circle painted on white paper", domain="painting", frames=4, seed=0, steps=2,
         mode="grid", cfg=1.0, negative="", mix=""):
    return generate(client, prompt, domain, mode, frames, seed, steps, cfg, negative, mix)


def captions(sheet: str) -> list[str]:
    return re.findall(r"<figcaption[^>]*>(.*?)</figcaption>", sheet)


def check_outputs(result, frames: int) -> None:
    sheet, grid, gif, archive, status = result
    assert Image.open(grid).size[0] > 0 and len(captions(sheet)) == frames
    assert captions(sheet)[0].startswith("1. ")  # below the frame, numbered in reading order
    assert sheet.count("image-rendering:pixelated") == frames
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == frames
    names = zipfile.ZipFile(archive).namelist()
    assert {"grid.png", "sequence.gif", "sequence.json", "sequence.png", f"frame_{frames - 1:02d}.png"} <= set(names)
    assert f"{frames} frames" in status


def test_text_to_sequence(client) -> None:
    result = text(client)
    check_outputs(result, 4)
    again = text(client)
    assert Image.open(again[1]).tobytes() == Image.open(result[1]).tobytes()  # same seed, same grid


@pytest.mark.parametrize("mode, frames", [("regional", 4), ("frame-by-frame", 3)])
def test_every_layout(client, mode, frames) -> None:
    result = text(client, mode=mode, frames=frames, steps=1)
    check_outputs(result, frames)
    assert f"{mode} layout" in result[4]


def test_domain_is_read_from_the_prompt(client) -> None:
    result = text(client, prompt="a red lego house of bricks", domain="auto (from the prompt)", steps=1)
    assert "**lego** (read from the prompt" in result[4]


def test_advanced_cfg_and_mix(client) -> None:
    check_outputs(text(client, cfg=2.0, negative="blurry", steps=1), 4)
    with pytest.raises(Exception, match="Bad adapter mix"):
        text(client, mix="lego=abc")


def test_recraft_upload(client, tmp_path) -> None:
    picture = tmp_path / "finished.png"
    Image.new("RGB", (40, 30), (200, 30, 30)).save(picture)  # any aspect ratio: padded to a square
    check_outputs(generate(client, gradio_client.handle_file(str(picture)), "painting", 4, 1, 2,
                           api_name="/recraft"), 4)


def test_continue_and_fill_in(client, tmp_path) -> None:
    first, last = tmp_path / "first.png", tmp_path / "last.png"
    Image.new("RGB", (16, 16), (250, 250, 250)).save(first)
    Image.new("RGB", (16, 16), (200, 30, 30)).save(last)
    handle = gradio_client.handle_file
    result = generate(client, "a red circle", "painting", [handle(str(first))], handle(str(last)), 4, 0, 1,
                      api_name="/continue")
    check_outputs(result, 4)
    assert "steps 1, 4 given" in result[4]
    with pytest.raises(Exception, match="Upload the first step"):
        generate(client, "a red circle", "painting", None, None, 4, 0, 1, api_name="/continue")


def test_tutorial(client) -> None:
    page, html_file, archive, status = generate(client, "show how to build a blue LEGO tower in 5 steps", "grid",
                                                0, 0, 1, api_name="/tutorial")
    assert len(captions(page)) == 5 and "5-step tutorial of **lego**" in status
    assert "<h2>Step 1 of 5</h2>" in Path(html_file).read_text()
    assert "tutorial.md" in zipfile.ZipFile(archive).namelist()


def test_adapt_the_last_result(client) -> None:
    text(client, steps=1)
    sheet, grid, gif, archive, status = generate(client, "sequence", 2.0, 1.5, 1, "average", 0, api_name="/adapt")
    assert "adapted:" in status and len(captions(sheet)) >= 2


def test_adapt_with_the_calibrated_rule(client) -> None:
    """The tab's default: the training split's thresholds and the insertion they chose, as `procseq adapt`."""
    text(client, steps=1)
    sheet, grid, gif, archive, status = generate(client, "calibrated", 2.0, 1.5, 1, "auto", 0, api_name="/adapt")
    assert "adapted:" in status and len(captions(sheet)) >= 2


def test_adapt_needs_a_result(running_app) -> None:
    fresh = gradio_client.Client(running_app[0], verbose=False)  # a new session: no last result
    with pytest.raises(Exception, match="Make a sequence in another tab first"):
        generate(fresh, "sequence", 2.0, 1.5, 1, "average", 0, api_name="/adapt")


@pytest.mark.parametrize("content, message", [
    (b"not an image at all", "not a readable image"),
    (None, "megapixels"),  # 1200 x 1000 PNG: over the test app's 1-megapixel limit
    (b"", "empty"),
])
def test_rejected_upload_is_a_readable_message(client, tmp_path, content, message) -> None:
    path = tmp_path / "upload.png"
    if content is None:
        Image.new("RGB", (1200, 1000), (255, 255, 255)).save(path)
    else:
        path.write_bytes(content)
    with pytest.raises(Exception, match=message) as err:
        generate(client, gradio_client.handle_file(str(path)), "painting", 4, 0, 2, api_name="/recraft")
    assert "Traceback" not in str(err.value) and str(tmp_path) not in str(err.value) and "/tmp/" not in str(err.value)


def test_server_files_cannot_be_named(running_app, tmp_path) -> None:
    import httpx

    picture = tmp_path / "on-the-server.png"  # a real picture the server could read, never uploaded
    Image.new("RGB", (16, 16)).save(picture)
    url = running_app[0] + "gradio_api/call/recraft"  # raw HTTP: gradio_client would upload a local file
    ref = {"path": str(picture), "meta": {"_type": "gradio.FileData"}}
    event = httpx.post(url, json={"data": [ref, "painting", 4, 0, 2]}).json()["event_id"]
    reply = httpx.get(f"{url}/{event}", timeout=60).text
    assert "event: error" in reply and "not uploaded by a user" in reply


def test_bad_settings_are_readable_messages(client) -> None:
    with pytest.raises(Exception, match="origami is not in the list of choices"):  # gradio checks the picker
        text(client, "a crane", "origami")
    with pytest.raises(Exception, match="Describe the finished artifact"):
        text(client, "   ")
    with pytest.raises(Exception, match="greater than maximum value"):  # the slider's bound
        text(client, "a crane", frames=40)
    with pytest.raises(Exception, match="between 2 and 9 in the grid layout"):  # the layout's own bound
        text(client, "a crane", frames=12)
    with pytest.raises(Exception, match="Upload a picture"):
        generate(client, None, "painting", 4, 0, 2, api_name="/recraft")


def test_user_errors_are_one_log_line(running_app, caplog) -> None:
    client = gradio_client.Client(running_app[0], verbose=False)
    with caplog.at_level("WARNING", logger="procseq.app"), pytest.raises(Exception):
        text(client, "   ")
    lines = [r.getMessage() for r in caplog.records if r.name == "procseq.app"]
    assert lines == ["refused: Describe the finished artifact first, e.g. 'a red lego house'."]
    assert not any(r.exc_info for r in caplog.records if r.name == "procseq.app")


def test_outputs_live_in_the_apps_own_folder(running_app) -> None:
    demo = running_app[1]
    assert demo.max_file_size == 1024 * 1024  # bytes: bigger uploads are refused before they are written
    assert Path(demo.engine.root).is_dir() and all(p.parent == demo.engine.root for p in demo.engine.root.iterdir())
