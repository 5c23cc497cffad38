"""procseq's attention processor: known-frame (condition) keys/values through ``joint_attention_kwargs``.

Clean known-frame tokens (VAE-encoded frames at t = 0) run in their **own** transformer forward pass
(the *condition pass*), with no text tokens, so they attend only to themselves. In that pass every
attention layer records its post-RoPE keys and values into a :class:`ConditionKV`. In the *main pass*
(the noisy sequence being denoised) every layer appends the recorded K/V to its own keys and values,
so text and image tokens attend to the known frames while the known frames never see them:

    query \\ key     text   image   known
    text             yes    yes     yes
    image            yes    yes     yes
    known            no     no      yes

realised without a mask tensor and without changing any block code (DESIGN.md #3). The condition K/V
do not depend on the noisy latents or the step, so they are computed once per generation.

All per-call state travels in ``joint_attention_kwargs`` (DESIGN.md #11), as diffusers hands it to
processors: ``condition_kv`` (the :class:`ConditionKV` store) and ``condition_phase`` (``"record"`` in
the condition pass, ``"use"`` in the main pass). The processor itself keeps only its layer name; with
no extra inputs it is exactly ``FluxAttnProcessor`` (tested bit for bit).

The same processor applies the regional mode's step-wise mask (:mod:`procseq.attention.masks`):
``region_mask`` (a :class:`~procseq.attention.masks.RegionMask`) restricts who attends to whom, and
``region_blend`` ``a`` blends in the unmasked (global) attention, ``z = a * z_global + (1 - a) * z_regional``.
Condition K/V and a region mask combine (every query reads the known frames).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from diffusers import FluxTransformer2DModel
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.embeddings import apply_rotary_emb
from diffusers.models.transformers.transformer_flux import FluxAttnProcessor, _get_qkv_projections

from procseq.attention.masks import RegionGroups, RegionMask
from procseq.models.peft_switch import adapters_enabled, set_adapters_active

ConditionPhase = Literal["record", "use"]
CONDITION_ADAPTER = "known_frames"
"""The peft adapter name of the condition LoRA (:mod:`procseq.conditioning.loras`, the registry of procseq's LoRAs),
the one LoRA :func:`run_condition_pass` switches itself."""


@dataclass
class ConditionKV:
    """Keys/values of the known-frame tokens per attention layer, filled by the condition pass.

    `kv` maps a processor name (``transformer.attn_processors`` key) to ``(key, value)``, each a
    `torch.Tensor` of shape `(batch, known_seq, heads, head_dim)` (post-RoPE).
    """

    kv: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def attention_kwargs(self, phase: ConditionPhase = "use") -> dict[str, Any]:
        """The ``joint_attention_kwargs`` that hand this store to :class:`ProcseqAttnProcessor`."""
        return {"condition_kv": self, "condition_phase": phase}


def _match_batch(x: torch.Tensor, batch: int) -> torch.Tensor:
    """Broadcast a condition tensor of batch 1 or ``batch / k`` to `batch` (CFG branches share the condition)."""
    if x.shape[0] == batch:
        return x
    if batch % x.shape[0]:
        raise ValueError(f"Condition batch {x.shape[0]} does not divide the attention batch {batch}.")
    return x.repeat(batch // x.shape[0], *([1] * (x.dim() - 1)))


class ProcseqAttnProcessor(FluxAttnProcessor):
    """``FluxAttnProcessor`` that records (condition pass) or appends (main pass) known-frame keys/values,
    and applies a regional mask blended with the global attention (regional mode).

    Args:
        name: this layer's processor name, its key in :attr:`ConditionKV.kv`.
    """

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        condition_kv: ConditionKV | None = None,
        condition_phase: ConditionPhase = "use",
        region_mask: RegionMask | None = None,
        region_blend: float = 0.0,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if condition_kv is None and region_mask is None:
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        if condition_kv is not None and condition_phase not in ("record", "use"):
            raise ValueError(f"Unknown condition_phase {condition_phase!r}; use 'record' or 'use'.")
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

        if condition_kv is None:
            pass
        elif condition_phase == "record":
            condition_kv.kv[self.name] = (key, value)
        else:
            if self.name not in condition_kv.kv:
                raise RuntimeError(f"No known-frame keys/values recorded for {self.name}; run the condition pass first.")
            cond_k, cond_v = (_match_batch(x, key.shape[0]).to(key.dtype) for x in condition_kv.kv[self.name])
            key = torch.cat([key, cond_k], dim=1)
            value = torch.cat([value, cond_v], dim=1)

        if region_mask is None:
            out = self.attend(query, key, value, attention_mask)
        elif attention_mask is None and region_mask.grouped:  # group by group: linear in the frames (the same result as the dense mask)
            out = self.attend_groups(query, key, value, region_mask.groups(query.shape[1], key.shape[1], query.device))
        else:
            mask = region_mask.for_attention(query.shape[1], key.shape[1], query.device)
            out = self.attend(query, key, value, mask if attention_mask is None else mask & attention_mask.bool())
        if region_mask is not None and region_blend > 0:  # z = a * z_global + (1 - a) * z_regional
            out = region_blend * self.attend(query, key, value, attention_mask) + (1 - region_blend) * out
        out = out.flatten(2, 3).to(query.dtype)
        if encoder_hidden_states is None:
            return out
        text, image = out.split_with_sizes([encoder_hidden_states.shape[1], hidden_states.shape[1]], dim=1)
        image = attn.to_out[1](attn.to_out[0](image.contiguous()))
        return image, attn.to_add_out(text.contiguous())

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               mask: torch.Tensor | None) -> torch.Tensor:
        """Scaled dot-product attention `(batch, seq, heads, head_dim)` through diffusers' dispatcher."""
        return dispatch_attention_fn(query, key, value, attn_mask=mask, backend=self._attention_backend,
                                     parallel_config=self._parallel_config)


    def attend_groups(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      groups: RegionGroups) -> torch.Tensor:
        """Attention under a regional mask, one small attention per step group instead of one dense masked
        ``L x L`` attention: each step group's queries read its own keys and the shared keys, the shared queries
        the shared keys (:class:`~procseq.attention.masks.RegionGroups`). `query` ``(B, Lq, H, D)``, `key` and
        `value` ``(B, Lk, H, D)`` -> ``(B, Lq, H, D)``."""
        b, heads, dim = query.shape[0], query.shape[2], query.shape[3]
        n_groups, width = groups.members.shape
        shared_k, shared_v = key[:, groups.shared], value[:, groups.shared]  # (B, S, H, D)

        def per_group(x: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
            own = x[:, groups.members]  # (B, G, M, H, D)
            both = torch.cat([shared[:, None].expand(-1, n_groups, -1, -1, -1), own], dim=2)
            return both.flatten(0, 1)  # (B * G, S + M, H, D)

        keep = torch.cat([groups.valid.new_ones(n_groups, groups.shared.numel()), groups.valid], dim=1)
        mask = keep[:, None, None, :].repeat(b, 1, 1, 1)  # (B * G, 1, 1, S + M): padding keys blocked
        out_groups = self.attend(query[:, groups.members].flatten(0, 1), per_group(key, shared_k),
                                 per_group(value, shared_v), mask).unflatten(0, (b, n_groups))
        out = query.new_zeros(b, query.shape[1], heads, dim)
        positions = groups.members[groups.valid]
        out[:, positions] = out_groups[:, groups.valid].to(out.dtype)
        if groups.shared_queries.numel():
            out[:, groups.shared_queries] = self.attend(query[:, groups.shared_queries], shared_k, shared_v,
                                                        None).to(out.dtype)
        return out


def install_processors(transformer: FluxTransformer2DModel) -> None:
    """Give every attention layer a :class:`ProcseqAttnProcessor` (idempotent).

    Installed once and left in place: without extra ``joint_attention_kwargs`` it computes exactly what
    ``FluxAttnProcessor`` computes. Other custom processors are not silently replaced.
    """
    current = transformer.attn_processors
    if all(isinstance(p, ProcseqAttnProcessor) for p in current.values()):
        return
    foreign = sorted({type(p).__name__ for p in current.values()
                      if type(p) is not FluxAttnProcessor and not isinstance(p, ProcseqAttnProcessor)})
    if foreign:
        raise ValueError(f"Known frames need the default Flux attention processors, found {', '.join(foreign)}; "
                         "reset them with transformer.set_attn_processor(FluxAttnProcessor()) first.")
    transformer.set_attn_processor({name: ProcseqAttnProcessor(name) for name in current})


def run_condition_pass(
    transformer: FluxTransformer2DModel,
    tokens: torch.Tensor,
    ids: torch.Tensor,
    pooled: torch.Tensor,
    guidance: torch.Tensor | None = None,
    lora: bool = True,
) -> ConditionKV:
    """The condition pass: the clean known-frame tokens alone at t = 0 (no text); returns every layer's K/V.

    Args:
        transformer: a transformer with :func:`install_processors` applied (installed here if not).
        tokens: packed clean latents of the known frames ``(batch, known_seq, in_channels)``.
        ids: their position ids ``(known_seq, 3)`` (:func:`procseq.attention.rope.known_position_ids`).
        pooled: the pooled text vector ``(batch or 1, P)`` for the time/text modulation of the branch.
        guidance: the guidance values ``(batch,)`` for guidance-distilled checkpoints.
        lora: enable the condition LoRA (the peft adapter ``known_frames``) for this pass; other adapters stay as they are.
    """
    install_processors(transformer)
    b = tokens.shape[0]
    store = ConditionKV()
    with adapters_enabled(transformer, lora, names=(CONDITION_ADAPTER,)):
        transformer(
            hidden_states=tokens, timestep=tokens.new_zeros(b), guidance=guidance,
            pooled_projections=pooled.expand(b, -1) if pooled.shape[0] == 1 else pooled,
            encoder_hidden_states=tokens.new_zeros(b, 0, transformer.config.joint_attention_dim),
            txt_ids=ids.new_zeros(0, 3), img_ids=ids, joint_attention_kwargs=store.attention_kwargs("record"),
            return_dict=False,
        )
    return store


__all__ = [
    "CONDITION_ADAPTER",
    "ConditionKV",
    "ProcseqAttnProcessor",
    "adapters_enabled",
    "set_adapters_active",
    "install_processors",
    "run_condition_pass",
]
