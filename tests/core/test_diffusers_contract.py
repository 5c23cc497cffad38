"""ProcessPipeline keeps the contracts diffusers' own pipeline tests check (PipelineTesterMixin, the Flux tests).

diffusers' test suite fetches its tiny components from the hub, which tests here never do: these are the same
contracts on procseq's offline micro components (signature, num_images_per_prompt, prompt_embeds reuse, output
types, dict/tuple equivalence, save/load through ProcessPipeline and DiffusionPipeline, to(dtype), components,
callbacks), plus what procseq adds (height/width of the grid, adapters kept across a round trip).
"""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline, FluxPipeline
from diffusers.utils import BaseOutput

from procseq.models.loading import EMBEDDED_DIR

from procseq.pipelines.loading import load_pipeline
from procseq.models.pipeline_index import PIPELINE_CLASS, PIPELINE_FILE
from procseq.pipelines.output import SequenceOutput
from procseq.pipelines.text_to_sequence import ProcessPipeline


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(seed)


def call(pipe, **kwargs):
    args = dict(prompt="a red circle", domain="painting", frames=4, generator=gen(0), output_type="np")
    return pipe(**{**args, **kwargs})


FLUX_CALL_ARGS = ("prompt", "prompt_2", "negative_prompt", "true_cfg_scale", "height", "width",
                  "num_inference_steps", "guidance_scale", "num_images_per_prompt", "generator", "latents",
                  "prompt_embeds", "pooled_prompt_embeds", "output_type", "return_dict", "joint_attention_kwargs",
                  "callback_on_step_end", "callback_on_step_end_tensor_inputs", "max_sequence_length")


def test_call_accepts_flux_pipeline_arguments() -> None:
    params = inspect.signature(ProcessPipeline.__call__).parameters
    missing = [name for name in FLUX_CALL_ARGS if name not in params]
    assert not missing
    assert "domain" in params and "frames" in params


def test_output_is_a_base_output_indexable_like_diffusers(tiny_pipe) -> None:
    out = call(tiny_pipe)
    assert isinstance(out, BaseOutput) and isinstance(out, SequenceOutput)
    assert out[0] is out.images is out["images"] is out.grid
    assert out.images.shape == (1, 32, 32, 3) and len(out.frames[0]) == 4 and len(out.captions[0]) == 4
    as_tuple = call(tiny_pipe, return_dict=False)
    assert isinstance(as_tuple, tuple) and np.array_equal(as_tuple[0], out.images)


@pytest.mark.parametrize("batch,n", [(1, 1), (1, 3), (2, 2)])
def test_num_images_per_prompt(tiny_pipe, batch: int, n: int) -> None:
    prompts = ["a red circle", "a blue lego tower"][:batch]
    out = call(tiny_pipe, prompt=prompts, num_images_per_prompt=n)
    assert out.images.shape[0] == batch * n and len(out.frames) == len(out.captions) == batch * n
    if n > 1:  # different noise for each sequence of one prompt
        assert not np.array_equal(out.images[0], out.images[1])


def test_num_images_per_prompt_is_checked(tiny_pipe) -> None:
    with pytest.raises(ValueError, match="num_images_per_prompt"):
        call(tiny_pipe, num_images_per_prompt=0)


def test_prompt_embeds_reuse_gives_the_same_sequence(tiny_pipe) -> None:
    embeds, pooled = tiny_pipe.encode_sequence_prompt("a red circle", "painting", frames=4)
    direct = call(tiny_pipe, output_type="latent").images  # latents: 8-bit frames can flip a level on 1e-7 noise
    reused = call(tiny_pipe, prompt=None, prompt_embeds=embeds, pooled_prompt_embeds=pooled, output_type="latent").images
    assert (direct - reused).abs().max() < 1e-5
    with pytest.raises(ValueError, match="pooled_prompt_embeds"):
        call(tiny_pipe, prompt=None, prompt_embeds=embeds)


def test_prompt_2_reaches_t5(tiny_pipe) -> None:
    same = call(tiny_pipe, prompt_2="a red circle").images
    other = call(tiny_pipe, prompt_2="a blue lego tower of three bricks").images
    assert np.abs(same - call(tiny_pipe).images).max() < 1e-5
    assert not np.allclose(same, other)


def test_output_types(tiny_pipe) -> None:
    pil = call(tiny_pipe, output_type="pil")
    np_out = call(tiny_pipe, output_type="np")
    pt = call(tiny_pipe, output_type="pt")
    latent = call(tiny_pipe, output_type="latent")
    assert pil.images[0].size == (32, 32)
    assert isinstance(pt.images, torch.Tensor) and pt.images.shape == (1, 3, 32, 32)
    assert pt.frames[0].shape == (4, 3, 16, 16)
    assert np.abs(pt.images.permute(0, 2, 3, 1).numpy() - np_out.images).max() < 1e-6
    assert isinstance(latent.images, torch.Tensor) and latent.images.ndim == 3
    with pytest.raises(ValueError, match="output_type"):
        call(tiny_pipe, output_type="mp4")


def test_height_width_size_the_grid(tiny_pipe) -> None:
    out = call(tiny_pipe, frames=9, height=96, width=96)  # 3x3 grid of 32 px frames
    assert out.images.shape == (1, 96, 96, 3) and out.frames[0].shape == (9, 32, 32, 3)
    out = call(tiny_pipe, frames=4, height=70, width=70)  # rounded down to the model's multiple, as Flux does
    assert out.images.shape[1] == out.images.shape[2] and out.images.shape[1] <= 70
    with pytest.raises(ValueError, match="square"):
        call(tiny_pipe, frames=4, height=64, width=128)


def test_callback_on_step_end(tiny_pipe) -> None:
    seen: list[int] = []

    def callback(pipe, step, timestep, tensors):
        seen.append(step)
        return {"latents": torch.zeros_like(tensors["latents"])} if step == 2 else tensors

    zeroed = call(tiny_pipe, num_inference_steps=3, callback_on_step_end=callback).images
    assert seen == [0, 1, 2]
    assert not np.allclose(zeroed, call(tiny_pipe, num_inference_steps=3).images)  # the returned latents are used
    with pytest.raises(ValueError, match="callback_on_step_end_tensor_inputs"):
        call(tiny_pipe, callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["prompt_embeds"])


def test_components_rebuild_the_same_pipeline(tiny_pipe) -> None:
    stock_names = set(inspect.signature(FluxPipeline.__init__).parameters) - {"self"}
    assert set(tiny_pipe.components) == stock_names
    rebuilt = ProcessPipeline(**tiny_pipe.components)
    rebuilt.set_progress_bar_config(disable=True)
    rebuilt.defaults = tiny_pipe.defaults
    assert np.array_equal(call(rebuilt).images, call(tiny_pipe).images)


def test_to_dtype(tiny_model_dir) -> None:
    pipe = load_pipeline(tiny_model_dir, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    pipe.to(torch.bfloat16)
    assert {m.dtype for m in (pipe.transformer, pipe.vae, pipe.text_encoder, pipe.text_encoder_2)} == {torch.bfloat16}
    out = call(pipe, frames=2, num_inference_steps=1)
    assert np.isfinite(out.images).all()


def test_save_load_round_trip_through_both_loaders(tiny_pipe, tmp_path) -> None:
    tiny_pipe.save_pretrained(tmp_path / "saved")
    index = json.loads((tmp_path / "saved" / "model_index.json").read_text())
    assert index["_class_name"] == PIPELINE_CLASS and (tmp_path / "saved" / PIPELINE_FILE).is_file()
    before = call(tiny_pipe).images
    for loaded in (ProcessPipeline.from_pretrained(tmp_path / "saved"),
                   DiffusionPipeline.from_pretrained(tmp_path / "saved"),
                   DiffusionPipeline.from_pretrained(tmp_path / "saved", custom_pipeline="pipeline",
                                                     trust_remote_code=True)):
        assert isinstance(loaded, ProcessPipeline)
        loaded.set_progress_bar_config(disable=True)
        assert np.abs(call(loaded).images - before).max() < 1e-6
    assert type(FluxPipeline.from_pretrained(tmp_path / "saved")) is FluxPipeline  # stock diffusers: the base


def test_embedded_folder_names_the_sequence_pipeline() -> None:
    index = json.loads((EMBEDDED_DIR / "model_index.json").read_text())
    assert index["_class_name"] == PIPELINE_CLASS and (EMBEDDED_DIR / PIPELINE_FILE).is_file()


def test_round_trip_keeps_adapter_domains(tmp_path) -> None:
    """A folder saved from the embedded model keeps its adapter domains (clay, sand_art) and their frames."""
    pipe = ProcessPipeline.from_pretrained("procseq-tiny")
    pipe.set_progress_bar_config(disable=True)
    assert {"clay", "sand_art"} <= set(pipe.adapter_domains)
    pipe.save_pretrained(tmp_path / "saved")
    loaded = DiffusionPipeline.from_pretrained(tmp_path / "saved")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.adapter_domains == pipe.adapter_domains
    for domain in ("clay", "lego"):
        kwargs = dict(prompt="a blue clay gem", domain=domain, frames=4, num_inference_steps=2, output_type="np")
        a = pipe(**kwargs, generator=gen(1)).images
        b = loaded(**kwargs, generator=gen(1)).images
        assert np.abs(a - b).max() < 1e-6
    none = ProcessPipeline.from_pretrained(tmp_path / "saved", adapters="none")
    assert none.adapter_domains == []
