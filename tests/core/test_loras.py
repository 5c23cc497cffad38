"""procseq's LoRA registry: each of its LoRAs is on exactly in its passes (checked by perturbing it: a LoRA whose B is
zeroed must give the same output wherever the LoRA is off), a user's own peft adapter and its scale stay as they were,
and a LoRA is in the model only while a pass uses it."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from procseq.conditioning.lora import add_condition_lora, save_condition_lora
from procseq.conditioning.loras import FRAME_BY_FRAME, KINDS, KNOWN_FRAMES, REGIONAL
from procseq.layouts import FrameByFrameOptions
from procseq.models.peft_switch import tuner_layers

TARGETS = ["to_q", "to_k", "to_v", "proj_out"]
RED = Image.new("RGB", (16, 16), (200, 30, 30))


def write_lora(tiny_pipe, folder, kind, meta, zero=False):
    """A random LoRA of `kind` (B ~ N(0, 0.3), or zero) saved as procseq's trainers write it."""
    model = copy.deepcopy(tiny_pipe.transformer)
    torch.manual_seed(7)
    add_condition_lora(model, 2, 2, TARGETS, adapter_name=kind.name)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.zero_() if zero else p.normal_(0, 0.3)
    return save_condition_lora(model, folder, meta, adapter_name=kind.name, meta_name=kind.metas[0])


@pytest.fixture(scope="module")
def folders(tiny_pipe, tmp_path_factory):
    """{(kind name, zero): folder} for the three kinds (the condition LoRA concat, without main_lora)."""
    root = tmp_path_factory.mktemp("loras")
    metas = {KNOWN_FRAMES.name: {"mode": "concat", "rank": 2, "alpha": 2}, REGIONAL.name: {"rank": 2},
             FRAME_BY_FRAME.name: {"rank": 2, "k": 2}}
    return {(k.name, zero): write_lora(tiny_pipe, root / f"{k.name}-{zero}", k, metas[k.name], zero)
            for k in KINDS.values() for zero in (False, True)}


def private_pipe(tiny_pipe):
    """A ProcessPipeline with its own copy of the micro transformer."""
    from procseq import ProcessPipeline

    pipe = ProcessPipeline(**{**tiny_pipe.components, "transformer": copy.deepcopy(tiny_pipe.transformer)})
    pipe.defaults = tiny_pipe.defaults
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_all(pipe, folders, zero=None, resident=False):
    """Every kind loaded into `pipe`'s registry, the kind named `zero` with its B zeroed."""
    for kind in KINDS.values():
        pipe.loras.load(kind, folders[(kind.name, kind.name == zero)], resident=resident)


def forward(transformer):
    """One transformer output on fixed inputs (4 frames of 2x2 tokens, 5 text tokens)."""
    g = torch.Generator().manual_seed(0)
    cfg = transformer.config
    with torch.no_grad():
        return transformer(hidden_states=torch.randn(1, 16, cfg.in_channels, generator=g), timestep=torch.tensor([0.7]),
                           pooled_projections=torch.randn(1, cfg.pooled_projection_dim, generator=g),
                           encoder_hidden_states=torch.randn(1, 5, cfg.joint_attention_dim, generator=g),
                           txt_ids=torch.zeros(5, 3), img_ids=torch.rand(16, 3, generator=g), return_dict=False)[0]


PASSES = {  # (layout, pass, known mode) -> the procseq LoRAs on there (a concat condition LoRA without main_lora)
    ("grid", "condition", "concat"): {"known_frames"},
    ("grid", "main", "concat"): set(),
    ("grid", "main", None): set(),
    ("regional", "condition", "concat"): {"known_frames", "regional"},
    ("regional", "main", "concat"): {"regional"},
    ("regional", "main", None): {"regional"},
    ("frame-by-frame", "condition", None): {"frame_by_frame"},
    ("frame-by-frame", "main", None): {"frame_by_frame"},
}


@pytest.mark.parametrize("where", list(PASSES))
def test_each_lora_is_on_exactly_in_its_passes(tiny_pipe, folders, where) -> None:
    pipe = private_pipe(tiny_pipe)
    layout, pass_, known_mode = where
    out = {}
    for zero in (None, *KINDS):
        load_all(pipe, folders, zero)
        with pipe.loras.active(layout, pass_, known_mode) as on:
            assert set(on) == PASSES[where]
            out[zero] = forward(pipe.transformer)
    for name in KINDS:  # zeroing a LoRA changes the output exactly where it is on
        assert torch.equal(out[name], out[None]) == (name not in PASSES[where]), name
    assert not tuner_layers(pipe.transformer)  # and it is out of the model again after


def test_the_condition_lora_in_the_main_pass_follows_its_mode(tiny_pipe, tmp_path) -> None:
    """An in-place LoRA is on in the main pass of in-place known frames; a concat one with ``main_lora`` in the main
    pass of concat known frames; neither without known frames."""
    pipe = private_pipe(tiny_pipe)
    for meta, known_mode in (({"mode": "inplace"}, "inplace"), ({"mode": "concat", "main_lora": True}, "concat")):
        outs = []
        for zero in (False, True):
            pipe.loras.load(KNOWN_FRAMES, write_lora(tiny_pipe, tmp_path / f"{known_mode}{zero}", KNOWN_FRAMES, meta, zero))
            with pipe.loras.active("grid", "main", known_mode) as on:
                assert on == ["known_frames"]
                outs.append(forward(pipe.transformer))
            with pipe.loras.active("grid", "main", None) as on:
                assert on == []
        assert not torch.equal(*outs)


def call(pipe, layout, folders, **kw):
    """A 4-frame call of `layout` with frame 0 known (concat: the condition pass runs in every layout)."""
    extra = {"frame_by_frame": FrameByFrameOptions(weights=str(folders[("frame_by_frame", False)].parent / (
        "frame_by_frame-False")))} if layout == "frame-by-frame" else {}
    out = pipe("a red circle", domain="painting", frames=4, num_inference_steps=2, mode=layout, known={0: RED},
               known_mode="concat", generator=torch.Generator().manual_seed(0), **extra, **kw)
    return np.stack([np.asarray(f) for f in out.frames[0]])


@pytest.mark.parametrize("layout", ["grid", "regional", "frame-by-frame"])
def test_generation_reads_each_lora_in_its_layout_only(tiny_pipe, folders, layout) -> None:
    """End to end: zeroing a LoRA changes the frames exactly in the layouts it is on in."""
    pipe = private_pipe(tiny_pipe)
    on = {"grid": {"known_frames"}, "regional": {"known_frames", "regional"}, "frame-by-frame": {"frame_by_frame"}}
    load_all(pipe, folders)
    full = call(pipe, layout, folders)
    for name in KINDS:
        if name == "frame_by_frame" and layout == "frame-by-frame":
            pipe.loras.load(FRAME_BY_FRAME, folders[(name, True)])
            zeroed = pipe("a red circle", domain="painting", frames=4, num_inference_steps=2, mode=layout,
                          known={0: RED}, generator=torch.Generator().manual_seed(0),
                          frame_by_frame=FrameByFrameOptions(weights=str(folders[(name, True)])))
            zeroed = np.stack([np.asarray(f) for f in zeroed.frames[0]])
        else:
            load_all(pipe, folders, zero=name)
            zeroed = call(pipe, layout, folders)
        assert np.array_equal(zeroed, full) == (name not in on[layout]), name
        load_all(pipe, folders)
    assert not tuner_layers(pipe.transformer)


def test_no_procseq_wrapper_stays_after_a_known_frames_call(tiny_pipe, folders, monkeypatch) -> None:
    """The condition LoRA is in the model only during the call that uses it; the next plain call runs the bare
    layers (the frames of a pipeline that never had it), and the wrappers come back parked, not built again."""
    import procseq.conditioning.loras as loras

    fresh = private_pipe(tiny_pipe)
    plain = dict(prompt="a red circle", domain="painting", frames=4, num_inference_steps=2)
    reference = fresh(**plain, generator=torch.Generator().manual_seed(1)).frames[0]
    pipe = private_pipe(tiny_pipe)
    pipe.load_condition_lora(folders[("known_frames", False)])
    injected = []
    monkeypatch.setattr(loras, "inject", lambda t, lora, real=loras.inject: injected.append(lora) or real(t, lora))
    first = call(pipe, "grid", folders)
    assert not tuner_layers(pipe.transformer) and not pipe.transformer.peft_config
    again = call(pipe, "grid", folders)
    assert np.array_equal(first, again) and len(injected) == 1  # parked, then put back
    after = pipe(**plain, generator=torch.Generator().manual_seed(1)).frames[0]
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(after, reference))
    assert pipe.condition_lora is not None and not tuner_layers(pipe.transformer)


def test_a_resident_lora_stays_and_is_off_outside_its_passes(tiny_pipe, folders) -> None:
    pipe = private_pipe(tiny_pipe)
    pipe.load_condition_lora(folders[("known_frames", False)], resident=True)
    assert set(pipe.transformer.peft_config) == {"known_frames"}
    assert not any(m.active_adapters for m in tuner_layers(pipe.transformer))
    parked = private_pipe(tiny_pipe)
    parked.load_condition_lora(folders[("known_frames", False)])
    assert np.array_equal(call(pipe, "grid", folders), call(parked, "grid", folders))
    assert set(pipe.transformer.peft_config) == {"known_frames"}


def test_a_users_peft_adapter_and_its_scale_are_left_alone(tiny_pipe, folders) -> None:
    """procseq's switching touches its own LoRAs only: a user's style LoRA at scale 0.5 stays active with its scale
    in every pass of every layout, and its layers' active lists are as they were after each call."""
    from peft import LoraConfig

    def add_style(pipe):
        torch.manual_seed(3)
        pipe.transformer.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "proj_out"],
                                                init_lora_weights="gaussian"), adapter_name="style")
        with torch.no_grad():
            for n, p in pipe.transformer.named_parameters():
                if "lora_B.style" in n:
                    p.normal_(0, 0.3)
        pipe.transformer.set_adapters(["style"], [0.5])

    def state(pipe):
        return [(list(m.active_adapters), m.scaling.get("style")) for m in tuner_layers(pipe.transformer)
                if "style" in m.scaling]

    pipe, style_only = private_pipe(tiny_pipe), private_pipe(tiny_pipe)
    add_style(pipe)
    add_style(style_only)
    before = state(pipe)
    assert before and all(active == ["style"] and scale == 0.5 for active, scale in before)
    load_all(pipe, folders)
    for layout, pass_, known_mode in PASSES:
        with pipe.loras.active(layout, pass_, known_mode):
            assert all("style" in active and scale == 0.5 for active, scale in state(pipe))
        assert state(pipe) == before
    for layout in ("grid", "regional", "frame-by-frame"):
        call(pipe, layout, folders)
        assert state(pipe) == before and set(pipe.transformer.peft_config) == {"style"}
    plain = dict(prompt="a red circle", domain="painting", frames=4, num_inference_steps=2)
    assert np.array_equal(np.asarray(pipe(**plain, generator=torch.Generator().manual_seed(2)).grid[0]),
                          np.asarray(style_only(**plain, generator=torch.Generator().manual_seed(2)).grid[0]))


def test_loading_checks_the_file_and_leaves_the_random_stream(tiny_pipe, folders, tmp_path) -> None:
    pipe = private_pipe(tiny_pipe)
    with pytest.raises(FileNotFoundError, match="No regional LoRA"):
        pipe.loras.load(REGIONAL, tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="ships no frame-by-frame LoRA"):
        pipe.loras.load(FRAME_BY_FRAME)
    (tmp_path / "pytorch_lora_weights.safetensors").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable LoRA"):
        pipe.loras.load(REGIONAL, tmp_path)
    pipe.loras.load(REGIONAL, folders[("regional", False)])
    torch.manual_seed(5)
    with pipe.loras.active("regional", "main"):
        drawn = torch.rand(3)
    torch.manual_seed(5)
    assert torch.equal(torch.rand(3), drawn)  # injecting the LoRA drew no random numbers


def test_a_lora_parked_under_a_users_new_adapter_is_injected_afresh(tiny_pipe, folders) -> None:
    """A user's LoRA added on the parked layers since: the condition LoRA goes in beside it, the same frames as
    without parking, and leaves the user's adapter alone after."""
    from peft import LoraConfig

    def with_style(pipe):
        torch.manual_seed(3)
        pipe.transformer.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=TARGETS, init_lora_weights="gaussian"),
                                     adapter_name="style")
        with torch.no_grad():
            for n, p in pipe.transformer.named_parameters():
                if "lora_B.style" in n:
                    p.normal_(0, 0.3)
        return pipe

    parked = private_pipe(tiny_pipe)
    parked.load_condition_lora(folders[("known_frames", False)])
    call(parked, "grid", folders)  # the wrappers are parked now
    never = private_pipe(tiny_pipe)
    never.load_condition_lora(folders[("known_frames", False)])
    assert np.array_equal(call(with_style(parked), "grid", folders), call(with_style(never), "grid", folders))
    assert set(parked.transformer.peft_config) == {"style"}
    assert all(list(m.active_adapters) == ["style"] for m in tuner_layers(parked.transformer))


def test_a_base_domain_call_runs_without_the_adapter_wrappers(tiny_pipe, folders, monkeypatch) -> None:
    """procseq's multi-domain adapters are out of the model during a base-domain call (the bare layers, the base
    model's frames) and back after; the condition LoRA parked around them follows them in and out, built once."""
    import procseq.conditioning.loras as loras
    from procseq.adapters import adapter_layers, add_asymmetric_lora

    def with_adapters(pipe):
        torch.manual_seed(4)
        add_asymmetric_lora(pipe.transformer, ["clay"])
        with torch.no_grad():
            for n, p in pipe.transformer.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.3)
        return pipe

    pipe = with_adapters(private_pipe(tiny_pipe))
    pipe.load_condition_lora(folders[("known_frames", False)])
    wrapped = len(adapter_layers(pipe.transformer))
    seen = []

    def spy(p, i, t, tensors):
        seen.append(len(adapter_layers(p.transformer)))
        return tensors

    injected = []
    monkeypatch.setattr(loras, "inject", lambda t, lora, real=loras.inject: injected.append(lora) or real(t, lora))
    kw = dict(prompt="a red circle", frames=4, num_inference_steps=2, known={0: RED}, known_mode="concat")
    runs = {}
    for domain in ("painting", "clay", "painting", "clay"):
        out = pipe(domain=domain, generator=torch.Generator().manual_seed(0), callback_on_step_end=spy, **kw)
        runs.setdefault(domain, []).append(out.frames[0])
    assert seen == [0, 0, wrapped, wrapped] * 2 and len(adapter_layers(pipe.transformer)) == wrapped
    assert len(injected) == 1 and not tuner_layers(pipe.transformer)
    for domain, (first, again) in runs.items():
        assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(first, again)), domain
    base = private_pipe(tiny_pipe)
    base.load_condition_lora(folders[("known_frames", False)])
    reference = base(domain="painting", generator=torch.Generator().manual_seed(0), **kw).frames[0]
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(runs["painting"][0], reference))
