"""``procseq train ... --plan-memory``: the GPU memory of one training step, before any weight loads.

The transformer of ``model.path`` is built on the meta device from its config file, the run's adapter is
added as the trainer adds it, and one forward + backward at the run's shapes is traced with
:class:`procseq.models.memory.LiveBytes` (gradient checkpointing included). Optimizer state is counted from
the trainable parameters (AdamW: two moments; CAME: one moment and factored second moments; 8-bit Adam:
two bytes per parameter). With sharding over N processes (``train.shard: fsdp``) base weights, gradients
and optimizer state are divided by N, plus the largest block gathered whole while it runs.
The trainers keep the text encoders and the VAE off the GPU (they run on the CPU, or not at all with
cached latents and text), so they are listed as CPU memory.
"""

from __future__ import annotations

from typing import Any

import torch

from procseq.models.memory import (
    GB,
    LiveBytes,
    MemoryPlan,
    component_configs,
    fused_attention,
    meta_component,
    tensor_bytes,
    transformer_inputs,
)
from procseq.training.config import RunConfig
from procseq.training.flow_matching import flow_matching_loss

KINDS = ("base", "adapter", "known-frames", "frame-by-frame", "regional")


def base_configs(cfg: RunConfig) -> dict[str, dict[str, Any]]:
    """Component configs of the run's model: ``model.path``'s config files, or procseq-tiny's from ``model.tiny``."""
    if cfg.model.path:
        return component_configs(cfg.model.path)
    from procseq.models.tiny import TinyConfig

    tiny = TinyConfig(**cfg.model.tiny)
    transformer = dict(in_channels=tiny.vae["latent_channels"] * 4, joint_attention_dim=tiny.t5["d_model"],
                       pooled_projection_dim=tiny.clip["hidden_size"], **tiny.transformer)
    return {"transformer": transformer, "vae": dict(tiny.vae),
            "text_encoder": dict(vocab_size=tiny.clip_vocab_size, max_position_embeddings=tiny.clip_max_length,
                                 **tiny.clip),
            "text_encoder_2": dict(vocab_size=tiny.t5_vocab_size, **tiny.t5)}


def add_trainable(transformer: torch.nn.Module, cfg: RunConfig, kind: str,
                  batch: int) -> list[torch.nn.Parameter]:
    """Make `transformer` what trainer `kind` trains (the adapter added, and routed for `batch` samples, as
    the trainer does it); returns the trainable parameters."""
    if kind == "base":
        transformer.requires_grad_(True)
        return list(transformer.parameters())
    if kind == "adapter":
        from procseq.adapters import domains, set_routing, trainable_parameters
        from procseq.training.adapters import add_adapter, adapter_domains

        add_adapter(transformer, cfg.adapter, adapter_domains(cfg.adapter, list(cfg.data.domains or ["domain"])))
        names = domains(transformer)
        params = trainable_parameters(transformer, names, train_shared=not cfg.adapter.freeze_a)
        set_routing(transformer, domains=[names[i % len(names)] for i in range(batch)])  # kept for the backward
        return params
    from procseq.conditioning.lora import add_condition_lora, lora_parameters

    section = {"known-frames": cfg.known_frames, "frame-by-frame": cfg.frame_by_frame, "regional": cfg.regional}[kind]
    add_condition_lora(transformer, section.rank, section.alpha, section.targets)
    return lora_parameters(transformer)


def optimizer_bytes(params: list[torch.nn.Parameter], name: str) -> int:
    """Bytes of optimizer state for `params`: AdamW 2 moments, CAME 1 moment + factored rows/columns,
    ``adamw8bit`` 2 bytes per parameter."""
    total = 0
    for p in params:
        size = p.element_size()
        if name == "adamw":
            total += 2 * p.numel() * size
        elif name == "adamw8bit":
            total += 2 * p.numel() + 8 * (p.numel() // 2048 + 1)
        elif p.dim() >= 2:  # CAME: exp_avg, and row + column factors of exp_avg_sq and exp_avg_res
            rows, cols = p.shape[0], p.numel() // p.shape[0]
            total += (p.numel() + 2 * (rows + cols)) * size
        else:
            total += 2 * p.numel() * size
    return total


def parse_shape(shape: str) -> tuple[int, int]:
    """``"9x336"`` -> ``(9, 336)`` (frames, frame side in pixels); ``ValueError`` with the expected form."""
    frames, _, px = shape.lower().partition("x")
    if not (frames.isdigit() and px.isdigit()) or int(frames) < 1 or int(px) < 16 or int(px) % 16:
        raise ValueError(f"--plan-shape {shape!r}: give FRAMESxPX with PX a multiple of 16, e.g. 9x336 or 4x512.")
    return int(frames), int(px)


def step_shapes(cfg: RunConfig, configs: dict[str, Any], frames: int, frame_size: int,
                text_tokens: int | None = None) -> tuple[int, int]:
    """``(image_tokens, text_tokens)`` of one training sequence: a grid of `frames` frames of `frame_size`
    pixels, 8x VAE, 2x2 packing; the model's T5 length (FLUX.1-dev: 512) unless `text_tokens` is given."""
    from procseq.layout import GridLayout

    layout = GridLayout.for_frames(frames)
    down = 2 ** (len(configs["vae"].get("block_out_channels", [0] * 4)) - 1) * 2
    image = layout.rows * (frame_size // down) * layout.cols * (frame_size // down)
    from procseq.models.memory import text_tokens as model_text_tokens
    from procseq.models.tiny import TinyConfig

    text = text_tokens or (model_text_tokens(cfg.model.path) if cfg.model.path
                           else TinyConfig(**cfg.model.tiny).t5_max_length)
    return image, text


def plan_training(cfg: RunConfig, kind: str = "base", frames: int = 9, frame_size: int = 336,
                  processes: int = 1, text_tokens: int | None = None) -> MemoryPlan:
    """The per-GPU memory of one step of trainer `kind` under `cfg` on sequences of `frames` x `frame_size` px."""
    from procseq.quiet import quiet_loading

    if kind not in KINDS:
        raise ValueError(f"Unknown trainer {kind!r}; use one of {', '.join(KINDS)}.")
    configs = base_configs(cfg)
    dtype = getattr(torch, cfg.model.dtype)
    with quiet_loading():
        model = meta_component("transformer", configs["transformer"], dtype)
        params = add_trainable(model, cfg, kind, cfg.train.batch_size)
    model.train()
    if cfg.train.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    image, text = step_shapes(cfg, configs, frames, frame_size, text_tokens)
    batch = cfg.train.batch_size
    base = tensor_bytes([p for p in model.parameters() if not p.requires_grad] + list(model.buffers()))
    trainable = tensor_bytes(params)
    mode = LiveBytes()
    with fused_attention(), mode:
        for t in [*model.parameters(), *model.buffers()]:
            mode.add(t)
        kwargs = transformer_inputs(model, batch, image, text)
        x0 = torch.randn_like(kwargs["hidden_states"])
        pred = model(**kwargs)[0]
        flow_matching_loss(pred, x0, kwargs["hidden_states"]).backward()
        del pred, kwargs, x0
    grads = tensor_bytes([p.grad for p in params if p.grad is not None])  # a domain absent from the batch: none
    work = mode.peak - base - trainable
    opt = optimizer_bytes(params, cfg.optim.name)
    shard = processes if cfg.train.shard == "fsdp" and processes > 1 else 1
    block = max(tensor_bytes(list(b.parameters())) for b in [*model.transformer_blocks, *model.single_transformer_blocks])
    plan = MemoryPlan(f"training memory plan: {kind} on {cfg.model.path or 'procseq-tiny (from scratch)'} "
                      f"({cfg.model.dtype}), {frames} frames x {frame_size} px = {image} image + {text} text tokens, "
                      f"batch {batch} per GPU, {len(params)} trainable tensors"
                      + (f", sharded over {shard} processes" if shard > 1 else ""))
    plan.rows["base weights" + (f" (1/{shard} + one block)" if shard > 1 else "")] = \
        base // shard + (block if shard > 1 else 0)
    plan.rows["trainable weights"] = trainable // shard
    plan.rows["gradients"] = grads // shard
    plan.rows[f"optimizer state ({cfg.optim.name})"] = opt // shard
    plan.rows["activations" + (" (checkpointed)" if cfg.train.gradient_checkpointing else "")] = max(0, work - grads)
    plan.peak = sum(plan.rows.values())
    with quiet_loading():
        cpu = sum(tensor_bytes([*meta_component(n, configs[n], dtype).parameters()])
                  for n in ("text_encoder", "text_encoder_2", "vae"))
    if kind == "base" and cfg.model.train_text_encoders:
        plan.notes.append(f"model.train_text_encoders: the text encoders ({cpu / GB:.1f} GB with the VAE) train on the "
                          "GPU too; their weights, gradients and activations are not in this plan")
    else:
        plan.notes.append(f"text encoders and VAE stay in CPU memory ({cpu / GB:.1f} GB), not on the GPU")
    if kind in ("known-frames", "frame-by-frame"):
        plan.notes.append("the known frames' own pass is not traced: it adds about (known tokens / image tokens) of "
                          "the activations")
    if kind == "adapter" and cfg.adapter.alignment.enabled:
        plan.notes.append("representation alignment adds one no-grad teacher forward (below the backward's peak)")
    plan.notes.append("CUDA context (~0.5 GB) and allocator fragmentation (~5 %) not included")
    return plan
