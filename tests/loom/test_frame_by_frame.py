"""The frame-by-frame mode: one frame per pass, history frames clean, same output type as grid mode."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from procseq.cli import main
from procseq.layouts import frame_by_frame as fbf
from procseq.conditioning.plan import Plan
from procseq.pipelines.output import SequenceOutput


def run(pipe, captions, seed=0, **kw):
    plan = Plan("a blue lego tower", "lego", captions)
    return pipe(plan=plan, mode="frame-by-frame", num_inference_steps=2, generator=torch.Generator().manual_seed(seed),
                **kw)


def test_any_length_output_and_determinism(tiny_pipe) -> None:
    caps = [f"place brick {i}" for i in range(12)]  # more frames than the grid's maximum (9)
    out = run(tiny_pipe, caps)
    assert isinstance(out, SequenceOutput) and len(out.frames[0]) == 12 and out.captions[0] == caps
    assert out.frames[0][0].size == (16, 16) and out.grid[0].size == (64, 48)
    meta = out.metadata[0]
    assert meta["mode"] == "frame-by-frame" and meta["history_frames"][:4] == [[], [0], [0, 1], [1, 2]]
    assert len(meta["timings_s"]["frames"]) == 12
    again = run(tiny_pipe, caps)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(out.frames[0], again.frames[0]))


def test_earlier_frames_stay_clean(tiny_pipe, monkeypatch) -> None:
    finals, conditions = [], []
    real_denoise, real_condition = fbf.denoise, fbf.KnownFrames.condition

    def spy_denoise(*args, **kw):
        finals.append(real_denoise(*args, **kw))
        return finals[-1]

    def spy_condition(self, *args, **kw):
        conditions.append(self.tokens().clone())
        return real_condition(self, *args, **kw)

    monkeypatch.setattr(fbf, "denoise", spy_denoise)
    monkeypatch.setattr(fbf.KnownFrames, "condition", spy_condition)
    caps = [f"step {i}" for i in range(6)]
    out = run(tiny_pipe, caps)
    history = out.metadata[0]["history_frames"]
    for t in range(1, 6):  # the condition pass of frame t holds exactly the final latents of its history frames
        want = torch.cat([finals[i] for i in history[t]], dim=1)
        assert torch.equal(conditions[t - 1], want)
    # a later step's caption changes nothing before it
    changed = run(tiny_pipe, caps[:4] + ["something else entirely", "step 5"])
    assert all(a.tobytes() == b.tobytes() for a, b in zip(out.frames[0][:4], changed.frames[0][:4]))
    assert out.frames[0][4].tobytes() != changed.frames[0][4].tobytes()


def test_known_frames_serve_as_history(tiny_pipe) -> None:
    image = Image.new("RGB", (16, 16), (200, 30, 30))
    out = run(tiny_pipe, [f"step {i}" for i in range(4)], known={0: image})
    assert out.frames[0][0].tobytes() == image.tobytes()
    assert out.metadata[0]["known_frames"] == [0] and out.metadata[0]["history_frames"][1] == [0]


def test_ablation_switches_and_errors(tiny_pipe) -> None:
    caps = [f"step {i}" for i in range(5)]
    for options in (fbf.FrameByFrameOptions(history="none"), fbf.FrameByFrameOptions(history="all"),
                    fbf.FrameByFrameOptions(k=4, step_caption=False)):
        out = tiny_pipe(plan=Plan("t", "lego", caps), num_inference_steps=1, mode="frame-by-frame",
                        frame_by_frame=options)
        assert len(out.frames[0]) == 5
    assert out.metadata[0]["history_frames"][4] == [0, 1, 2, 3]  # k=4 at t=4: every earlier frame
    with pytest.raises(ValueError, match="Unknown mode"):
        tiny_pipe("x", domain="lego", mode="sideways")
    with pytest.raises(ValueError, match="between 2 and 256"):
        tiny_pipe("x", domain="lego", frames=300, mode="frame-by-frame")
    with pytest.raises(ValueError, match="Unknown history"):
        fbf.FrameByFrameOptions(history="random")  # type: ignore[arg-type]


def test_cli_generate_frame_by_frame(tmp_path, tiny_model_dir) -> None:
    r = CliRunner().invoke(main, ["generate", "a blue lego tower", "-d", "lego", "--frames", "12", "--steps", "1",
                                  "--mode", "frame-by-frame", "--model", str(tiny_model_dir), "--out",
                                  str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    record = json.loads((tmp_path / "o" / "sequence.json").read_text())
    assert len(record["captions"]) == 12 and (tmp_path / "o" / "frame_11.png").is_file()


def test_a_base_that_learnt_the_layout_ships_its_step_embedding_alone(tiny_pipe, tmp_path) -> None:
    import json

    from procseq.conditioning.history import EMBEDDING_FILE, StepEmbedding, save_step_embedding

    folder = tmp_path / "frame_by_frame"
    folder.mkdir()
    save_step_embedding(StepEmbedding(tiny_pipe.transformer.config.in_channels, 4), folder / EMBEDDING_FILE)
    (folder / "frame_by_frame.json").write_text(json.dumps({"k": 1}))
    assert fbf.default_weights(tmp_path) == folder
    out = tiny_pipe(plan=Plan("t", "lego", [f"step {i}" for i in range(4)]), num_inference_steps=1,
                    mode="frame-by-frame", frame_by_frame=fbf.FrameByFrameOptions(weights=str(folder)))
    meta = out.metadata[0]
    assert meta["step_embedding"] and meta["k"] == 1 and meta["frame_by_frame_weights"] == str(folder)
    assert "frame_by_frame" not in (getattr(tiny_pipe.transformer, "peft_config", None) or {})  # no LoRA loaded
