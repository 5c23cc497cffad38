"""Adaptive steps on the micro pipeline: its own encoders, insertion through known frames, SequenceOutput in and out."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from procseq.models.features import FeatureExtractor, ImageFeatures, LocalVisionFeatures, PipelineFeatures
from procseq.pipelines.adaptive import AdaptiveConfig, PipelineInterpolator, adapt_frames, adapt_output

from .conftest import FakeExtractor, frame


def test_the_pipeline_features_have_the_documented_shapes(tiny_pipe) -> None:
    ex = PipelineFeatures(tiny_pipe)
    assert isinstance(ex, FeatureExtractor) and isinstance(FakeExtractor(), FeatureExtractor)
    feats = ex.image_features([frame(1, 16), frame(5, 16), frame(5, 16)])
    c = tiny_pipe.vae.config.block_out_channels[-1]
    assert feats.embeds.shape == (3, c * 4 * 4) and feats.patches.shape == (3, 16, c)
    assert torch.equal(feats.embeds[1], feats.embeds[2]) and not torch.equal(feats.embeds[0], feats.embeds[1])
    text = ex.text_features(["sketch the outline", "add shading", "sketch the outline"])
    assert text.shape[0] == 3 and torch.equal(text[0], text[2]) and not torch.equal(text[0], text[1])


def test_insertion_keeps_both_neighbours_and_is_deterministic(tiny_pipe) -> None:
    interp = PipelineInterpolator(tiny_pipe, "a red circle", "painting", num_inference_steps=2)
    left, right = frame(2, 16), frame(8, 16)
    a = interp(left, right, ["sketch the outline", "add shading (first part)", "add shading"], seed=3)
    b = interp(left, right, ["sketch the outline", "add shading (first part)", "add shading"], seed=3)
    assert a.size == (16, 16) and np.array_equal(np.asarray(a), np.asarray(b))


def test_adapt_output_updates_frames_captions_plans_and_metadata(tiny_pipe) -> None:
    out = tiny_pipe("a red circle", domain="painting", frames=4, num_inference_steps=2,
                    generator=torch.Generator().manual_seed(0))
    out.frames[0][2] = out.frames[0][1].copy()  # a duplicate step
    interp = PipelineInterpolator(tiny_pipe, "a red circle", "painting", num_inference_steps=2)
    res = adapt_output(out, PipelineFeatures(tiny_pipe), [interp], AdaptiveConfig(k_add=5.0, k_del=1.0))
    n = len(res.frames[0])
    assert n == 3 and len(res.captions[0]) == n and res.plans[0].captions == res.captions[0]
    assert res.metadata[0]["frames"] == n and res.metadata[0]["adaptive"]["origin"] == [0, 1, 3]
    assert res.grid[0].size == (32, 32)  # the 2x2 grid of 3 frames


def test_a_local_dinov2_plugs_in(tiny_pipe, tmp_path) -> None:
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    Dinov2Model(Dinov2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24,
                             image_size=16, patch_size=8)).save_pretrained(tmp_path)
    BitImageProcessor(do_resize=False, do_center_crop=False, crop_size={"height": 16, "width": 16}).save_pretrained(
        tmp_path)
    ex = LocalVisionFeatures(tmp_path, text_fallback=PipelineFeatures(tiny_pipe))
    feats = ex.image_features([frame(1, 16), frame(6, 16)])
    assert isinstance(feats, ImageFeatures) and feats.embeds.shape == (2, 16) and feats.patches.shape == (2, 4, 16)
    assert ex.text_features(["add shading"]).shape[0] == 1
    with pytest.raises(ValueError, match="text_fallback"):
        LocalVisionFeatures(tmp_path)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        LocalVisionFeatures(tmp_path / "nope")


def test_clip_global_and_dinov2_local_combine(tiny_pipe, tiny_model_dir, tmp_path) -> None:
    import shutil

    from transformers import (BitImageProcessor, CLIPConfig, CLIPImageProcessor, CLIPModel, Dinov2Config,
                              Dinov2Model)

    from procseq.models.features import CombinedFeatures, load_feature_extractor

    torch.manual_seed(0)
    clip, dino = tmp_path / "clip", tmp_path / "dino"
    text = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24,
                vocab_size=tiny_pipe.tokenizer.vocab_size, max_position_embeddings=77)
    vision = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24, image_size=16,
                  patch_size=8)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=8)).save_pretrained(clip)
    CLIPImageProcessor(do_resize=False, do_center_crop=False, crop_size={"height": 16, "width": 16}).save_pretrained(clip)
    for f in (tiny_model_dir / "tokenizer").iterdir():
        shutil.copy(f, clip / f.name)
    Dinov2Model(Dinov2Config(hidden_size=12, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24,
                             image_size=16, patch_size=4)).save_pretrained(dino)
    BitImageProcessor(do_resize=False, do_center_crop=False, crop_size={"height": 16, "width": 16}).save_pretrained(dino)
    ex = load_feature_extractor(tiny_pipe, global_path=clip, local_path=dino)
    assert isinstance(ex, CombinedFeatures)
    feats = ex.image_features([frame(1, 16), frame(6, 16)])
    assert feats.embeds.shape == (2, 8) and feats.patches.shape == (2, 16, 12)  # CLIP projection, DINO 4x4 patches
    assert ex.text_features(["add shading", "wash the sky"]).shape == (2, 8)  # CLIP's own text tower
    res = adapt_frames([frame(v, 16) for v in (0, 1, 2, 4)], ["a", "b", "c", "d"], ex, None,
                       AdaptiveConfig(insert=False))
    assert set(res.record["rounds"][0]["pairs"][0]) >= {"global", "local", "semantic"}
