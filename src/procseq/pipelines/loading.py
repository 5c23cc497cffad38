"""Load a :class:`~procseq.pipelines.text_to_sequence.ProcessPipeline` from any Flux diffusers checkpoint: the
embedded model, a local folder or a hub id, with the dtype and threads chosen for this machine.

Finding the checkpoint, its defaults and the request checks that need no weights are in
:mod:`procseq.models.loading`; this module builds the pipeline on top of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from procseq.machine import apply_threads, choose_threads, detect
from procseq.models.loading import check_device, resolve_adapters, resolve_model, torch_dtype
from procseq.models.quantize import check_quantization, quantization_config
from procseq.quiet import quiet_loading

if TYPE_CHECKING:  # torch and diffusers load only when a pipeline does (a fast command line)
    import torch

    from procseq.pipelines.text_to_sequence import ProcessPipeline


def load_pipeline(
    model: str | Path | None = None,
    dtype: str | torch.dtype = "auto",
    device: str | torch.device | None = None,
    cpu_offload: bool = False,
    adapters: str | Path | None = None,
    pipeline_class: type | None = None,
    threads: int | None = None,
    compile: bool = False,
    quantize: str = "none",
) -> ProcessPipeline:
    """Load a :class:`ProcessPipeline` from any Flux diffusers checkpoint.

    The dtype and thread count chosen (and why) are in ``pipe.machine_choices``.

    Args:
        model: None or ``"procseq-tiny"`` (embedded), a local folder, or a hub id.
        dtype: weights dtype (``"float32"``, ``"bfloat16"``, ``"float16"``, a torch dtype, or ``"auto"``: the faster
            for this model on this machine, :func:`procseq.machine.choose_dtype`).
        device: where to run (default: CUDA if available, else CPU). Ignored with `cpu_offload`.
        cpu_offload: ``enable_model_cpu_offload`` (each component moves to the GPU only while it runs).
        adapters: a procseq multi-domain adapter file (``procseq train adapter``) to load, ``"none"`` for
            none; default: the folder's installed ``adapters/adapters.safetensors`` when there is one
            (the embedded model ships the asymmetric LoRA of its adapter domains).
        pipeline_class: a :class:`ProcessPipeline` subclass to instantiate instead.
        threads: torch intra-op threads (default: ``OMP_NUM_THREADS`` if set, else every available core).
        compile: ``torch.compile`` the transformer in place (static shapes), with its tanh GELUs in their sigmoid
            form (:func:`~procseq.models.fast_paths.sigmoid_gelu`, within 5e-7). The first generation of each shape
            pays the compilation (30-40 s on a 2-core CPU, less from inductor's cache), so it pays only after a few
            hundred generations of one shape.
        quantize: ``"int8"`` (torchao) or ``"nf4"`` (bitsandbytes): the transformer's weights quantized while it
            loads, through diffusers' ``quantization_config`` (:mod:`procseq.models.quantize`); ``"none"`` (default).
    """
    import torch

    with quiet_loading():
        from procseq.models.fast_paths import cache_rotary_tables, sigmoid_gelu
        from procseq.pipelines.text_to_sequence import ProcessPipeline

    check_device(device, cpu_offload)
    check_quantization(quantize)
    location = resolve_model(model)
    adapter_file = resolve_adapters(location, adapters)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    weights_dtype, dtype_choice = torch_dtype(dtype, location, "cuda" if cpu_offload else str(device))
    thread_choice = choose_threads(threads, detect(with_cuda=False))
    apply_threads(thread_choice)
    try:
        with quiet_loading():
            pipe = (pipeline_class or ProcessPipeline).from_pretrained(
                location, dtype=weights_dtype, adapters=adapter_file or "none",
                **({"quantization_config": quantization_config(quantize)} if quantize != "none" else {}))
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"Could not load a Flux pipeline from {location}: {err}") from err
    if cpu_offload:
        pipe.enable_model_cpu_offload()
    else:
        pipe.to(device)
    cache_rotary_tables(pipe.transformer)  # exact: the same outputs, the tables built once per generation
    if compile:
        sigmoid_gelu(pipe.transformer)  # ~2x faster GELU on AVX2 CPUs, within 5e-7 (compiled outputs are not exact anyway)
        pipe.transformer.compile(dynamic=False)
    pipe.machine_choices = {"dtype": dtype_choice, "threads": thread_choice}
    pipe.set_progress_bar_config(disable=None)
    return pipe


__all__ = ["load_pipeline"]
