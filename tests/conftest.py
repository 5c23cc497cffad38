"""Tiny random FLUX.1 components, built offline the way diffusers' own tests build them."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from procseq.models.tiny import TinyConfig, save_tiny_model  # noqa: E402

TEXTS = [
    "a red circle painted on white paper", "a blue lego tower of three bricks", "sketch the outline",
    "block in flat colour", "add shading", "paint the details", "chop the carrots", "plate the dish",
    "a green square", "a yellow star", "step", "lay the base bricks", "build up the next layer",
]
TEST_DOMAINS = ["painting", "lego"]


def micro_config() -> TinyConfig:
    """The smallest sensible procseq-tiny: 1+1 transformer blocks, 16 px frames, 9 frames max."""
    return TinyConfig(
        frame_size=16, max_frames=9, num_inference_steps=3, clip_max_length=16, t5_max_length=16, clip_vocab_size=300, t5_vocab_size=200,
        vae=dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 3,
                 up_block_types=["UpDecoderBlock2D"] * 3, block_out_channels=[8, 16, 16], layers_per_block=1,
                 latent_channels=4, norm_num_groups=8, sample_size=48, scaling_factor=1.0, shift_factor=0.0,
                 mid_block_add_attention=False),
        clip=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, projection_dim=32),
        t5=dict(d_model=32, d_kv=8, d_ff=16, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
                dropout_rate=0.0, feed_forward_proj="gated-gelu"),
        transformer=dict(patch_size=1, num_layers=1, num_single_layers=1, attention_head_dim=16,
                         num_attention_heads=2, guidance_embeds=False, axes_dims_rope=[4, 4, 8]),
        scheduler=dict(shift=1.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                       base_image_seq_len=16, max_image_seq_len=256),
    )


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory):
    """A saved random micro procseq checkpoint (diffusers folder + procseq.json)."""
    out = tmp_path_factory.mktemp("models") / "micro"
    return save_tiny_model(out, micro_config(), texts=TEXTS, seed=0, domains=TEST_DOMAINS)


@pytest.fixture(scope="session")
def tiny_pipe(tiny_model_dir):
    """A ProcessPipeline on the micro checkpoint (CPU, float32)."""
    from procseq.pipelines.loading import load_pipeline

    pipe = load_pipeline(tiny_model_dir, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe
