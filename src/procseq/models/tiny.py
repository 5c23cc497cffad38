"""Build the miniature FLUX.1 (procseq-tiny) components, and their tokenizers, entirely offline.

Every component is the stock class FLUX.1 uses (``AutoencoderKL``, ``CLIPTextModel`` + ``CLIPTokenizer``,
``T5EncoderModel`` + ``T5Tokenizer``, ``FluxTransformer2DModel``, ``FlowMatchEulerDiscreteScheduler``),
only smaller, so the saved folder is a FLUX.1 checkpoint that stock ``diffusers.FluxPipeline`` loads.

Tokenizers are trained here from a list of texts (the corpus vocabulary) with the ``tokenizers``
library: a byte-level BPE with ``</w>`` word ends for CLIP (every byte's unicode stand-in is in the
vocabulary, alone and with ``</w>``, so no word collapses to one id), a Unigram model with
SentencePiece-style ``▁`` word starts for T5.
"""

from __future__ import annotations

import json
import math
import string
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5Tokenizer

from procseq.models.loading import PROCSEQ_CONFIG
from procseq.models.pipeline_index import mark_procseq_folder

CLIP_SPECIALS = ("<|startoftext|>", "<|endoftext|>")
T5_SPECIALS = ("<pad>", "</s>", "<unk>")


@dataclass
class TinyConfig:
    """Sizes of every procseq-tiny component (constructor kwargs of the stock classes).

    ``frame_size`` is the native frame side in pixels and ``max_frames`` the longest sequence the
    model was built for; both are recorded in the saved folder (``procseq.json``) and used as defaults.
    """

    frame_size: int = 32
    max_frames: int = 9
    num_inference_steps: int = 20
    true_cfg_scale: float = 1.0  # default sampling guidance written to procseq.json (tiny.yaml: 2.0)
    clip_max_length: int = 32
    t5_max_length: int = 32
    clip_vocab_size: int = 1024
    t5_vocab_size: int = 1024
    vae: dict[str, Any] = field(
        default_factory=lambda: dict(
            in_channels=3,
            out_channels=3,
            down_block_types=["DownEncoderBlock2D"] * 3,
            up_block_types=["UpDecoderBlock2D"] * 3,
            block_out_channels=[16, 32, 64],
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=8,
            sample_size=96,
            scaling_factor=1.0,
            shift_factor=0.0,
            mid_block_add_attention=False,
        )
    )
    clip: dict[str, Any] = field(
        default_factory=lambda: dict(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, projection_dim=64
        )
    )
    t5: dict[str, Any] = field(
        default_factory=lambda: dict(
            d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
            dropout_rate=0.0, feed_forward_proj="gated-gelu",
        )
    )
    transformer: dict[str, Any] = field(
        default_factory=lambda: dict(
            patch_size=1, num_layers=2, num_single_layers=4, attention_head_dim=32, num_attention_heads=4,
            guidance_embeds=False, axes_dims_rope=[8, 12, 12],
        )
    )
    scheduler: dict[str, Any] = field(
        default_factory=lambda: dict(
            shift=1.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
            base_image_seq_len=64, max_image_seq_len=1024,
        )
    )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML/JSON-serialisable)."""
        return asdict(self)


# ----------------------------------------------------------------------------------------------
# Tokenizers
# ----------------------------------------------------------------------------------------------


def _words(texts: Iterable[str]) -> list[str]:
    return [t.lower() for t in texts if t and t.strip()]


def build_clip_tokenizer(texts: Iterable[str], vocab_size: int = 1024, max_length: int = 32) -> CLIPTokenizer:
    """A byte-level BPE CLIPTokenizer trained on `texts` (every byte's stand-in, alone and with ``</w>``)."""
    backend = Tokenizer(models.BPE(end_of_word_suffix="</w>", continuing_subword_prefix=""))
    backend.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(CLIP_SPECIALS), initial_alphabet=alphabet,
        end_of_word_suffix="</w>", show_progress=False, min_frequency=1,
    )
    backend.train_from_iterator(_words(texts), trainer)
    model = json.loads(backend.to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    for piece in sorted(alphabet) + [c + "</w>" for c in sorted(alphabet)]:
        vocab.setdefault(piece, len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)


def build_t5_tokenizer(texts: Iterable[str], vocab_size: int = 1024, max_length: int = 32) -> T5Tokenizer:
    """A Unigram T5Tokenizer (``<pad>``=0, ``</s>``=1, ``<unk>``=2) whose pieces are the corpus words.

    Every whitespace-separated word of `texts` (and its bare form without punctuation) becomes a
    ``▁word`` piece scored by its log frequency; single characters are kept as low-scoring fallback
    pieces, so known words are one token and unknown words still tokenize. (The ``tokenizers``
    Unigram trainer, on a small corpus, kept a few hundred sub-word pieces and split most words.)
    """
    counts: Counter[str] = Counter()
    chars: set[str] = set(string.ascii_lowercase + string.digits + string.punctuation)
    for text in _words(texts):
        for word in text.split():
            counts["▁" + word] += 1
            bare = word.strip(string.punctuation)
            if bare and bare != word:
                counts["▁" + bare] += 1
            chars.update(word)
    specials = [(tok, 0.0) for tok in T5_SPECIALS]
    fallback = [("▁", -12.0)] + [(c, -15.0) for c in sorted(chars)]
    room = max(0, vocab_size - len(specials) - len(fallback))
    total = sum(counts.values()) or 1
    words = [(w, math.log(n / total)) for w, n in counts.most_common(room)]
    return T5Tokenizer(vocab=specials + words + fallback, extra_ids=0, model_max_length=max_length)


# ----------------------------------------------------------------------------------------------
# Components
# ----------------------------------------------------------------------------------------------


def build_tokenizers(config: TinyConfig, texts: Iterable[str]) -> tuple[CLIPTokenizer, T5Tokenizer]:
    """The CLIP and T5 tokenizers of `config`'s sizes trained on `texts`. (The BPE trainer breaks ties
    between equally frequent merges differently in every process: save them once, as training does.)"""
    texts = list(texts)
    return (build_clip_tokenizer(texts, config.clip_vocab_size, config.clip_max_length),
            build_t5_tokenizer(texts, config.t5_vocab_size, config.t5_max_length))


def build_components(config: TinyConfig, texts: Iterable[str], seed: int = 0,
                     tokenizers: tuple[CLIPTokenizer, T5Tokenizer] | None = None) -> dict[str, Any]:
    """Randomly initialised FLUX.1 components of `config`'s sizes, tokenizers trained on `texts`
    (or the given `tokenizers`, then `texts` is unused).

    Returns:
        kwargs for ``FluxPipeline(**components)`` (and :class:`procseq.ProcessPipeline`).
    """
    tokenizer, tokenizer_2 = tokenizers or build_tokenizers(config, texts)
    torch.manual_seed(seed)
    vae = AutoencoderKL(**config.vae)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer), max_position_embeddings=config.clip_max_length,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, **config.clip,
        )
    )
    text_encoder_2 = T5EncoderModel(
        T5Config(vocab_size=len(tokenizer_2), pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, **config.t5)
    )
    transformer = FluxTransformer2DModel(
        in_channels=config.vae["latent_channels"] * 4,
        joint_attention_dim=config.t5["d_model"],
        pooled_projection_dim=config.clip["hidden_size"],
        **config.transformer,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(**config.scheduler)
    return dict(
        scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
        text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, transformer=transformer,
    )


def procseq_metadata(config: TinyConfig, **extra: Any) -> dict[str, Any]:
    """The ``procseq.json`` record saved beside ``model_index.json``: native sizes used as defaults."""
    return {
        "frame_size": config.frame_size,
        "max_frames": config.max_frames,
        "max_sequence_length": config.t5_max_length,
        "num_inference_steps": config.num_inference_steps,
        "true_cfg_scale": config.true_cfg_scale,
        **extra,
    }


def save_tiny_model(out_dir: str | Path, config: TinyConfig | None = None, texts: Iterable[str] = (),
                    seed: int = 0, **metadata: Any) -> Path:
    """Build a (random) procseq-tiny and save it as a diffusers folder with its ``procseq.json``."""
    from diffusers import FluxPipeline

    config = config or TinyConfig()
    pipe = FluxPipeline(**build_components(config, texts, seed))
    out = Path(out_dir)
    pipe.save_pretrained(out, safe_serialization=True)
    (out / PROCSEQ_CONFIG).write_text(json.dumps(procseq_metadata(config, **metadata), indent=2) + "\n")
    return mark_procseq_folder(out)
