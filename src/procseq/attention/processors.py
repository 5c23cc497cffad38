"""Condition-branch attention processors with a per-layer K/V cache (OminiControl-style, DESIGN.md #3).

Clean condition tokens (a VAE-encoded image at t = 0) run in their **own** transformer forward pass
(the *condition pass*), with no text tokens, so they attend only to themselves. In that pass every
attention layer records its post-RoPE keys and values. In the *main pass* (the noisy grid being
denoised), every layer appends the recorded condition K/V to its own keys and values, so text and
image tokens attend to the condition while the condition never sees them. This is the group mask

    query \\ key     text   image   condition
    text             yes    yes     yes
    image            yes    yes     yes
    condition        no     no      yes

realised without a mask tensor and without changing any block code: the condition K/V do not depend
on the noisy latents or the step, so they are computed once per generation and reused at every step.

A LoRA for the condition branch (peft adapter, e.g. ``"recraft"``) is enabled only while the
condition pass runs (:func:`adapters_enabled`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from diffusers import FluxTransformer2DModel
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.embeddings import apply_rotary_emb
from diffusers.models.transformers.transformer_flux import (
    FluxAttnProcessor,
    _get_qkv_projections,
)

CacheMode = Literal["off", "record", "use"]


@dataclass
class ConditionCache:
    """Keys/values of the condition tokens per attention layer, shared by all installed processors.

    `mode`: ``"off"`` (plain attention), ``"record"`` (condition pass: attend normally, store K/V),
    ``"use"`` (main pass: append the stored K/V to every layer's keys and values).
    `kv` maps a layer name to ``(key, value)``, each `torch.Tensor` of shape `(batch, cond_seq, heads, head_dim)`.
    """

    mode: CacheMode = "off"
    kv: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def clear(self) -> None:
        """Forget every recorded layer and switch attention back to plain."""
        self.kv.clear()
        self.mode = "off"

    @contextmanager
    def as_mode(self, mode: CacheMode) -> Iterator[ConditionCache]:
        """Temporarily set :attr:`mode`."""
        previous, self.mode = self.mode, mode
        try:
            yield self
        finally:
            self.mode = previous


class ConditionKVProcessor(FluxAttnProcessor):
    """``FluxAttnProcessor`` that records (condition pass) or appends (main pass) condition keys/values.

    Args:
        cache: the :class:`ConditionCache` shared by every layer of one transformer.
        name: this layer's key in ``cache.kv`` (its processor name in ``transformer.attn_processors``).
    """

    def __init__(self, cache: ConditionCache, name: str):
        super().__init__()
        self.cache, self.name = cache, name

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        mode = self.cache.mode
        if mode == "off":
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        query, key, value, enc_q, enc_k, enc_v = _get_qkv_projections(attn, hidden_states, encoder_hidden_states)
        query, key, value = (x.unflatten(-1, (-1, attn.head_dim)) for x in (query, key, value))
        query, key = attn.norm_q(query), attn.norm_k(key)
        if attn.added_kv_proj_dim is not None and encoder_hidden_states is not None:
            enc_q, enc_k, enc_v = (x.unflatten(-1, (-1, attn.head_dim)) for x in (enc_q, enc_k, enc_v))
            query = torch.cat([attn.norm_added_q(enc_q), query], dim=1)
            key = torch.cat([attn.norm_added_k(enc_k), key], dim=1)
            value = torch.cat([enc_v, value], dim=1)
        if image_rotary_emb is not None:
            query = apply_rotary_emb(query, image_rotary_emb, sequence_dim=1)
            key = apply_rotary_emb(key, image_rotary_emb, sequence_dim=1)

        if mode == "record":
            self.cache.kv[self.name] = (key, value)
        elif mode == "use":
            if self.name not in self.cache.kv:
                raise RuntimeError(f"No condition keys/values recorded for {self.name}; run the condition pass first.")
            cond_k, cond_v = self.cache.kv[self.name]
            if cond_k.shape[0] != key.shape[0]:
                cond_k, cond_v = (x.expand(key.shape[0], *x.shape[1:]) for x in (cond_k, cond_v))
            key = torch.cat([key, cond_k.to(key.dtype)], dim=1)
            value = torch.cat([value, cond_v.to(value.dtype)], dim=1)
        else:
            raise ValueError(f"Unknown condition cache mode {mode!r}; use 'off', 'record' or 'use'.")

        out = dispatch_attention_fn(query, key, value, attn_mask=attention_mask, backend=self._attention_backend,
                                    parallel_config=self._parallel_config)
        out = out.flatten(2, 3).to(query.dtype)
        if encoder_hidden_states is None:
            return out
        text, image = out.split_with_sizes([encoder_hidden_states.shape[1], hidden_states.shape[1]], dim=1)
        image = attn.to_out[1](attn.to_out[0](image.contiguous()))
        return image, attn.to_add_out(text.contiguous())


@contextmanager
def condition_processors(transformer: FluxTransformer2DModel,
                         cache: ConditionCache | None = None) -> Iterator[ConditionCache]:
    """Install a :class:`ConditionKVProcessor` on every attention layer; the previous processors come back on exit."""
    cache = cache if cache is not None else ConditionCache()
    previous = transformer.attn_processors
    transformer.set_attn_processor({name: ConditionKVProcessor(cache, name) for name in previous})
    try:
        yield cache
    finally:
        transformer.set_attn_processor(previous)
        cache.clear()


def _has_adapters(transformer: Any) -> bool:
    return bool(getattr(transformer, "_hf_peft_config_loaded", False))


@contextmanager
def adapters_enabled(transformer: Any, enabled: bool) -> Iterator[None]:
    """Run with the transformer's peft adapters on or off (a no-op without adapters).

    Unlike a bare ``disable_adapters()``, the adapter parameters keep their ``requires_grad``, so a
    LoRA used in the condition pass still gets gradients through the cached keys/values while the
    main pass runs without it.
    """
    if not _has_adapters(transformer):
        yield
        return
    from peft.tuners.tuners_utils import BaseTunerLayer

    lora = [p for n, p in transformer.named_parameters() if "lora_" in n]
    flags = [p.requires_grad for p in lora]
    was_enabled = not any(m.disable_adapters for m in transformer.modules() if isinstance(m, BaseTunerLayer))

    def switch(on: bool) -> None:
        transformer.enable_adapters() if on else transformer.disable_adapters()
        for p, f in zip(lora, flags):
            p.requires_grad_(f)

    if enabled != was_enabled:
        switch(enabled)
    try:
        yield
    finally:
        if enabled != was_enabled:
            switch(was_enabled)


def run_condition_pass(
    transformer: FluxTransformer2DModel,
    cache: ConditionCache,
    cond_tokens: torch.Tensor,
    cond_ids: torch.Tensor,
    pooled: torch.Tensor,
    guidance: torch.Tensor | None = None,
    lora: bool = True,
) -> ConditionCache:
    """The condition pass: the clean tokens alone at t = 0 (no text tokens); records every layer's K/V.

    Args:
        transformer: a transformer whose processors were installed by :func:`condition_processors`.
        cache: the shared cache (filled in place and returned).
        cond_tokens: packed clean condition latents `(batch, cond_seq, in_channels)`.
        cond_ids: their position ids `(cond_seq, 3)` (:func:`procseq.attention.rope.condition_position_ids`).
        pooled: the pooled text vector `(batch, P)` for the time/text modulation of the branch.
        guidance: the guidance values `(batch,)` for guidance-distilled checkpoints.
        lora: enable the transformer's adapters for this pass (the condition LoRA).
    """
    b = cond_tokens.shape[0]
    cfg = transformer.config
    empty_text = cond_tokens.new_zeros(b, 0, cfg.joint_attention_dim)
    empty_ids = cond_ids.new_zeros(0, 3)
    cache.kv.clear()
    with cache.as_mode("record"), adapters_enabled(transformer, lora):
        transformer(
            hidden_states=cond_tokens, timestep=cond_tokens.new_zeros(b), guidance=guidance,
            pooled_projections=pooled.expand(b, -1) if pooled.shape[0] == 1 else pooled,
            encoder_hidden_states=empty_text, txt_ids=empty_ids, img_ids=cond_ids, return_dict=False,
        )
    return cache


__all__ = [
    "ConditionCache",
    "ConditionKVProcessor",
    "adapters_enabled",
    "condition_processors",
    "run_condition_pass",
]
