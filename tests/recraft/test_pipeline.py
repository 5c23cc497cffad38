"""ImageToSequencePipeline: clean condition, cached == uncached, in-place overwrite, last frame, extend, seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from procseq.images import prepare_image
from procseq.layout import GridLayout, frame_token_indices


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
    expected = recraft_pipe.encode_condition(prepare_image(finished, 16))
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
        run(recraft_pipe, finished, frames=4, mode="inplace")
    finally:
        calls.close()
    assert not calls.condition() and len(calls.main()) == 2
    clean = recraft_pipe.encode_condition(prepare_image(finished, 16))
    final = frame_token_indices(GridLayout.for_frames(4), 2)[-1]
    others = torch.ones(16, dtype=torch.bool)
    others[final] = False
    for c in calls.main():
        torch.testing.assert_close(c["hidden_states"][:, final], clean, rtol=0, atol=0)
    assert not torch.equal(calls.main()[0]["hidden_states"][:, others], calls.main()[1]["hidden_states"][:, others])


@pytest.mark.parametrize("mode", ["concat", "inplace"])
def test_last_frame_is_the_input_and_seeds_are_deterministic(recraft_pipe, finished, mode) -> None:
    out = run(recraft_pipe, finished, frames=4, mode=mode, seed=3)
    frames = arrays(out)
    assert len(frames) == 4 and all(f.shape == (16, 16, 3) for f in frames)
    assert np.array_equal(frames[-1], np.asarray(prepare_image(finished, 16)))
    assert len(out.captions[0]) == 4 and out.metadata[0]["mode"] == mode
    assert out.grid[0].size == (32, 32)
    same = arrays(run(recraft_pipe, finished, frames=4, mode=mode, seed=3))
    other = arrays(run(recraft_pipe, finished, frames=4, mode=mode, seed=4))
    assert all(np.array_equal(x, y) for x, y in zip(frames, same))
    assert not all(np.array_equal(x, y) for x, y in zip(frames[:-1], other[:-1]))


@pytest.mark.parametrize("frames, extend", [(4, 5), (9, 3)])
def test_extend_adds_frames_before_the_first(recraft_pipe, finished, frames, extend) -> None:
    out = run(recraft_pipe, finished, frames=frames, extend=extend, num_inference_steps=2)
    assert len(out.frames[0]) == frames + extend == len(out.captions[0])
    assert np.array_equal(np.asarray(out.frames[0][-1]), np.asarray(prepare_image(finished, 16)))
    assert out.metadata[0]["frames"] == frames + extend


@pytest.mark.parametrize("kw, message", [
    ({"mode": "sideways"}, "Unknown ReCraft mode"),
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

    from procseq.pipelines.image_to_sequence import ImageToSequencePipeline
    from procseq.training.config import RecraftConfig
    from procseq.training.recraft import add_recraft_lora, save_recraft_lora

    trained = copy.deepcopy(recraft_pipe.transformer)
    add_recraft_lora(trained, RecraftConfig(rank=2, alpha=2, mode="inplace"))
    with torch.no_grad():
        for n, p in trained.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    save_recraft_lora(trained, tmp_path, RecraftConfig(rank=2, alpha=2, mode="inplace"))
    keys = list(load_file(str(tmp_path / "pytorch_lora_weights.safetensors")))
    assert keys and all(k.startswith("transformer.") and (".lora_A." in k or ".lora_B." in k) for k in keys)
    components = dict(recraft_pipe.components, transformer=copy.deepcopy(recraft_pipe.transformer))
    pipe = ImageToSequencePipeline(**components)
    pipe.defaults = recraft_pipe.defaults
    pipe.set_progress_bar_config(disable=True)
    plain = arrays(run(pipe, finished, frames=4, mode="inplace"))
    pipe.load_recraft(tmp_path)
    assert pipe.recraft_mode == "inplace"
    with_lora = arrays(run(pipe, finished, frames=4))
    assert not all(np.array_equal(x, y) for x, y in zip(plain[:-1], with_lora[:-1]))
