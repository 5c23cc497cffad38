"""Known frames in the pipelines: clean at t=0, cached == uncached, in-place overwrite, any cells, ReCraft, extend."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from procseq.conditioning.frames import encode_frames
from procseq.images import prepare_image
from procseq.layout import GridLayout, frame_token_indices, pack_latents


def clean_tokens(pipe, *images):
    """The packed tokens of frames encoded alone (one VAE batch, as the pipeline does), in order."""
    packed = pack_latents(encode_frames(pipe.vae, [prepare_image(im, 16) for im in images]))
    return packed.reshape(1, -1, packed.shape[-1])


def run(pipe, image, seed: int = 0, **kw):
    kw.setdefault("num_inference_steps", 2)
    return pipe(image, domain="painting", generator=torch.Generator().manual_seed(seed), **kw)


def arrays(out) -> list[np.ndarray]:
    return [np.asarray(f) for f in out.frames[0]]


class Calls:
    """Records every transformer call (a forward pre-hook: observation only, nothing is patched)."""

    def __init__(self, transformer):
        self.calls: list[dict] = []
        self.handle = transformer.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs):
        self.calls.append({k: kwargs[k].clone() for k in ("hidden_states", "timestep", "encoder_hidden_states")})

    def condition(self) -> list[dict]:
        return [c for c in self.calls if c["encoder_hidden_states"].shape[1] == 0]

    def main(self) -> list[dict]:
        return [c for c in self.calls if c["encoder_hidden_states"].shape[1] > 0]

    def close(self) -> None:
        self.handle.remove()


@pytest.mark.parametrize("cached", [True, False])
def test_condition_tokens_stay_clean_at_t0(recraft_pipe, finished, cached) -> None:
    calls = Calls(recraft_pipe.transformer)
    try:
        run(recraft_pipe, finished, frames=4, cache_condition=cached)
    finally:
        calls.close()
    cond, main = calls.condition(), calls.main()
    assert len(main) == 2
    assert len(cond) == (1 if cached else 2)  # cached: one condition pass per generation
    expected = clean_tokens(recraft_pipe, finished)
    for c in cond:
        assert torch.equal(c["timestep"], torch.zeros_like(c["timestep"]))  # t = 0
        torch.testing.assert_close(c["hidden_states"], expected, rtol=0, atol=0)  # never noised, never changed


def test_cached_and_uncached_give_the_same_output(recraft_pipe, finished) -> None:
    a = arrays(run(recraft_pipe, finished, frames=4, cache_condition=True))
    b = arrays(run(recraft_pipe, finished, frames=4, cache_condition=False))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_inplace_overwrites_the_final_cell_before_every_step(recraft_pipe, finished) -> None:
    calls = Calls(recraft_pipe.transformer)
    try:
        run(recraft_pipe, finished, frames=4, known_mode="inplace")
    finally:
        calls.close()
    assert not calls.condition() and len(calls.main()) == 2
    clean = clean_tokens(recraft_pipe, finished)
    final = frame_token_indices(GridLayout.for_frames(4), 2)[-1]
    others = torch.ones(16, dtype=torch.bool)
    others[final] = False
    for c in calls.main():
        torch.testing.assert_close(c["hidden_states"][:, final], clean, rtol=0, atol=0)
    assert not torch.equal(calls.main()[0]["hidden_states"][:, others], calls.main()[1]["hidden_states"][:, others])


@pytest.mark.parametrize("mode", ["concat", "inplace"])
def test_last_frame_is_the_input_and_seeds_are_deterministic(recraft_pipe, finished, mode) -> None:
    out = run(recraft_pipe, finished, frames=4, known_mode=mode, seed=3)
    frames = arrays(out)
    assert len(frames) == 4 and all(f.shape == (16, 16, 3) for f in frames)
    assert np.array_equal(frames[-1], np.asarray(prepare_image(finished, 16)))
    assert len(out.captions[0]) == 4 and out.metadata[0]["known_mode"] == mode
    assert out.grid[0].size == (32, 32)
    same = arrays(run(recraft_pipe, finished, frames=4, known_mode=mode, seed=3))
    other = arrays(run(recraft_pipe, finished, frames=4, known_mode=mode, seed=4))
    assert all(np.array_equal(x, y) for x, y in zip(frames, same))
    assert not all(np.array_equal(x, y) for x, y in zip(frames[:-1], other[:-1]))


@pytest.mark.parametrize("frames, extend", [(4, 5), (9, 3)])
def test_extend_adds_frames_before_the_first(recraft_pipe, finished, frames, extend) -> None:
    out = run(recraft_pipe, finished, frames=frames, extend=extend, num_inference_steps=2)
    assert len(out.frames[0]) == frames + extend == len(out.captions[0])
    assert np.array_equal(np.asarray(out.frames[0][-1]), np.asarray(prepare_image(finished, 16)))
    assert out.metadata[0]["frames"] == frames + extend


@pytest.mark.parametrize("kw, message", [
    ({"known_mode": "sideways"}, "Unknown known_mode"),
    ({"extend": True}, "extend"),
    ({"extend": -1}, "extend"),
    ({"frames": 1}, "between 2 and 9"),
    ({"domain": "opera"}, "Unknown domain"),
])
def test_bad_requests_raise(recraft_pipe, finished, kw, message) -> None:
    with pytest.raises(ValueError, match=message):
        recraft_pipe(finished, **{"domain": "painting", **kw})


def test_default_domain_is_the_models_first(recraft_pipe, finished) -> None:
    out = recraft_pipe(finished, frames=4, num_inference_steps=2)
    assert out.metadata[0]["domain"] == recraft_pipe.defaults.domains[0] == "painting"
    assert out.metadata[0]["prompt"] == "a painting"


def test_lora_round_trip_in_peft_naming(recraft_pipe, finished, tmp_path) -> None:
    import copy

    from safetensors.torch import load_file

    from procseq.conditioning.lora import add_condition_lora, save_condition_lora
    from procseq.pipelines.image_to_sequence import ImageToSequencePipeline

    trained = copy.deepcopy(recraft_pipe.transformer)
    add_condition_lora(trained, 2, 2, ["to_q", "to_k", "to_v"])
    with torch.no_grad():
        for n, p in trained.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    save_condition_lora(trained, tmp_path, {"mode": "inplace", "rank": 2})
    keys = list(load_file(str(tmp_path / "pytorch_lora_weights.safetensors")))
    assert keys and all(k.startswith("transformer.") and (".lora_A." in k or ".lora_B." in k) for k in keys)
    components = dict(recraft_pipe.components, transformer=copy.deepcopy(recraft_pipe.transformer))
    pipe = ImageToSequencePipeline(**components)
    pipe.defaults = recraft_pipe.defaults
    pipe.set_progress_bar_config(disable=True)
    plain = arrays(run(pipe, finished, frames=4, known_mode="inplace"))
    pipe.load_condition_lora(tmp_path)
    assert pipe.condition_lora["mode"] == "inplace" == pipe.default_known_mode()
    with_lora = arrays(run(pipe, finished, frames=4))
    assert not all(np.array_equal(x, y) for x, y in zip(plain[:-1], with_lora[:-1]))


def squares(*colours):
    out = []
    for c in colours:
        arr = np.full((16, 16, 3), 255, np.uint8)
        arr[3:13, 3:13] = c
        out.append(Image.fromarray(arr))
    return out


@pytest.mark.parametrize("known_idx", [(0, 1), (1, 3), (0, 2, 4), (-1,)])
@pytest.mark.parametrize("mode", ["concat", "inplace"])
def test_any_cells_known_clean_and_given_back(tiny_pipe, known_idx, mode) -> None:
    images = squares((200, 30, 30), (30, 200, 30), (30, 30, 200))[: len(known_idx)]
    calls = Calls(tiny_pipe.transformer)
    try:
        out = tiny_pipe("a red circle", domain="painting", frames=5, num_inference_steps=2, known_mode=mode,
                        known=dict(zip(known_idx, images)), generator=torch.Generator().manual_seed(0))
    finally:
        calls.close()
    normal = sorted(k % 5 for k in known_idx)
    assert out.metadata[0]["known_frames"] == normal
    by_index = {k % 5: im for k, im in zip(known_idx, images)}
    for k in range(5):  # the given images come back unchanged at their cells
        if k in by_index:
            assert np.array_equal(np.asarray(out.frames[0][k]), np.asarray(by_index[k]))
    clean = clean_tokens(tiny_pipe, *[by_index[k] for k in normal])
    cells = torch.cat([frame_token_indices(GridLayout.for_frames(5), 2)[k] for k in normal])
    if mode == "concat":
        assert len(calls.condition()) == 1
        torch.testing.assert_close(calls.condition()[0]["hidden_states"], clean, rtol=0, atol=0)
    else:
        assert not calls.condition()
        for c in calls.main():
            torch.testing.assert_close(c["hidden_states"][:, cells], clean, rtol=0, atol=0)


def test_known_frames_change_the_generated_ones(tiny_pipe) -> None:
    red, green = squares((200, 30, 30), (30, 200, 30))
    kw = dict(domain="painting", frames=4, num_inference_steps=2)
    a = tiny_pipe("a red circle", known={0: red}, generator=torch.Generator().manual_seed(0), **kw)
    b = tiny_pipe("a red circle", known={0: green}, generator=torch.Generator().manual_seed(0), **kw)
    assert not np.array_equal(np.asarray(a.frames[0][2]), np.asarray(b.frames[0][2]))


@pytest.mark.parametrize("known, match", [
    ({4: "x.png"}, "outside"), ({0: None, 1: None, 2: None, 3: None}, "nothing to generate"),
    ({-5: "x.png"}, "outside"),
])
def test_bad_known_indices_raise(tiny_pipe, known, match) -> None:
    with pytest.raises(ValueError, match=match):
        tiny_pipe("a red circle", domain="painting", frames=4, known=known)


def test_continuation_keeps_the_first_steps(recraft_pipe) -> None:
    first = squares((200, 30, 30), (30, 200, 30))
    out = recraft_pipe.continue_sequence(first, "a red circle", domain="painting", frames=4, num_inference_steps=2,
                                         generator=torch.Generator().manual_seed(0))
    assert len(out.frames[0]) == 4 and out.metadata[0]["known_frames"] == [0, 1]
    assert all(np.array_equal(np.asarray(out.frames[0][i]), np.asarray(first[i])) for i in range(2))


def test_default_mode_per_use_follows_the_lora(recraft_pipe, monkeypatch) -> None:
    """A last-cell (ReCraft) LoRA: concat for the last cell, in-place for any other set; a LoRA trained on
    other sets too (``subsets`` beyond ``last`` in its metadata): its own mode; no LoRA: concat."""

    def condition_lora(meta):  # the condition LoRA's metadata as the pipeline's LoRA registry reports it
        monkeypatch.setattr(recraft_pipe.loras, "info", lambda kind: meta)

    condition_lora(None)
    assert recraft_pipe.default_known_mode((3,), 4) == "concat"
    condition_lora({"mode": "concat", "path": "x"})  # legacy recraft.json: no subsets
    assert recraft_pipe.default_known_mode((3,), 4) == "concat"
    assert recraft_pipe.default_known_mode((0, 1), 4) == "inplace" == recraft_pipe.default_known_mode((0, 2), 4)
    condition_lora({"mode": "concat", "subsets": {"last": 1.0}, "path": "x"})  # trained on last alone
    assert recraft_pipe.default_known_mode((3,), 4) == "concat" and recraft_pipe.default_known_mode((0, 1), 4) == "inplace"
    condition_lora({"mode": "concat", "subsets": {"last": 0.5, "first": 0.5}, "path": "x"})
    assert recraft_pipe.default_known_mode((0, 1), 4) == "concat"
    condition_lora(None)
