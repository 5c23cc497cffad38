"""The web app as a user drives it, through gradio_client against the running server on loopback."""

from __future__ import annotations

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


def check_outputs(result, frames: int) -> None:
    grid, gallery, gif, archive, status = result
    assert Image.open(grid).size[0] > 0 and len(gallery) == frames
    assert gallery[0]["caption"].startswith("1. ")
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == frames
    names = zipfile.ZipFile(archive).namelist()
    assert {"grid.png", "sequence.gif", "sequence.json", f"frame_{frames - 1:02d}.png"} <= set(names)
    assert f"{frames} frames" in status


def test_text_to_sequence(client) -> None:
    result = generate(client, "a red circle painted on white paper", "painting", 4, 0, 2)
    check_outputs(result, 4)
    again = generate(client, "a red circle painted on white paper", "painting", 4, 0, 2)
    assert Image.open(again[0]).tobytes() == Image.open(result[0]).tobytes()  # same seed, same grid


def test_recraft_upload(client, tmp_path) -> None:
    picture = tmp_path / "finished.png"
    Image.new("RGB", (40, 30), (200, 30, 30)).save(picture)  # any aspect ratio: padded to a square
    check_outputs(generate(client, gradio_client.handle_file(str(picture)), "painting", 4, 1, 2,
                           api_name="/recraft"), 4)


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
        generate(client, "a crane", "origami", 4, 0, 2)
    with pytest.raises(Exception, match="Describe the finished artifact"):
        generate(client, "   ", "painting", 4, 0, 2)
    with pytest.raises(Exception, match="greater than maximum value 9"):  # the slider's bound
        generate(client, "a crane", "painting", 40, 0, 2)
    with pytest.raises(Exception, match="Upload a picture"):
        generate(client, None, "painting", 4, 0, 2, api_name="/recraft")


def test_outputs_live_in_the_apps_own_folder(running_app) -> None:
    demo = running_app[1]
    assert demo.max_file_size == 1024 * 1024  # bytes: bigger uploads are refused before they are written
    assert Path(demo.engine.root).is_dir() and all(p.parent == demo.engine.root for p in demo.engine.root.iterdir())
