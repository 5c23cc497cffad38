"""Find and load a Flux checkpoint in diffusers folder format: embedded, local folder, or hub id."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from procseq.models.tiny import PROCSEQ_CONFIG

if TYPE_CHECKING:
    from procseq.pipelines.text_to_sequence import ProcessPipeline

EMBEDDED_DIR = Path(__file__).resolve().parent.parent / "embedded" / "procseq-tiny"
EMBEDDED_NAME = "procseq-tiny"
ADAPTERS_FILE = "adapters/adapters.safetensors"
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


@dataclass(frozen=True)
class ModelDefaults:
    """Native sizes of a checkpoint, read from its ``procseq.json`` (FLUX.1-class values otherwise).

    Args:
        frame_size: side of one frame in pixels.
        max_frames: the longest sequence the checkpoint supports in one grid.
        max_sequence_length: T5 tokens per prompt.
        num_inference_steps, guidance_scale: default sampling settings.
        true_cfg_scale: default true classifier-free guidance (1 = off; >1 adds an empty-prompt pass).
        domains: domains the checkpoint was trained on (empty: any domain name is accepted).
        text_padding: ``"max"`` pads every prompt to `max_sequence_length` T5 tokens (as FluxPipeline does);
            ``"longest"`` encodes only as many tokens as the longest prompt (and negative prompt) needs.
    """

    frame_size: int = 512
    max_frames: int = 16
    max_sequence_length: int = 512
    num_inference_steps: int = 28
    guidance_scale: float = 3.5
    true_cfg_scale: float = 1.0
    domains: tuple[str, ...] = ()
    text_padding: str = "max"

    @classmethod
    def from_folder(cls, folder: Path | None) -> "ModelDefaults":
        """Defaults from `folder`/procseq.json, or the FLUX.1 values when there is none."""
        path = folder / PROCSEQ_CONFIG if folder is not None else None
        if path is None or not path.is_file():
            return cls()
        record: dict[str, Any] = json.loads(path.read_text())
        known = {k: record[k] for k in cls.__dataclass_fields__ if k in record}
        if "domains" in known:
            known["domains"] = tuple(known["domains"])
        return cls(**known)

    def frame_size_for(self, num_frames: int) -> int:
        """The frame size for `num_frames`: native size, shrunk for long grids on 1024-class models."""
        if self.max_frames <= 9 or num_frames <= 4:
            return self.frame_size
        cols = math.ceil(math.sqrt(num_frames))
        return max(16, min(self.frame_size, (1024 // cols) // 16 * 16))


def resolve_model(model: str | Path | None) -> str:
    """A loadable location: the embedded model for None/``"procseq-tiny"``, a local folder, or a hub id."""
    if model is None or str(model) == EMBEDDED_NAME:
        if not (EMBEDDED_DIR / "model_index.json").is_file():
            raise FileNotFoundError(
                f"The embedded model is missing at {EMBEDDED_DIR}; reinstall procseq, or pass --model with a "
                "Flux diffusers folder (`procseq init-tiny DIR` builds an untrained one)."
            )
        return str(EMBEDDED_DIR)
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "model_index.json").is_file():
            raise FileNotFoundError(
                f"{path} is not a diffusers model folder (no model_index.json); pass a folder saved with "
                "save_pretrained, or a hub id such as black-forest-labs/FLUX.1-dev."
            )
        return str(path)
    if str(model).count("/") == 1 and not str(model).startswith((".", "/", "~")):
        return str(model)  # hub id; loading needs network access
    raise FileNotFoundError(f"Model {model!r} is neither a local folder nor a hub id (owner/name).")


def installed_adapters(location: str | Path) -> Path | None:
    """The adapter file installed in a model folder (``adapters/adapters.safetensors``), if any."""
    path = Path(location) / ADAPTERS_FILE
    return path if path.is_file() else None


def load_pipeline(
    model: str | Path | None = None,
    dtype: str | torch.dtype = "float32",
    device: str | torch.device | None = None,
    cpu_offload: bool = False,
    adapters: str | Path | None = None,
    pipeline_class: type | None = None,
) -> "ProcessPipeline":
    """Load a :class:`ProcessPipeline` from any Flux diffusers checkpoint.

    Args:
        model: None or ``"procseq-tiny"`` (embedded), a local folder, or a hub id.
        dtype: weights dtype (``"float32"``, ``"bfloat16"``, ``"float16"`` or a torch dtype).
        device: where to run (default: CUDA if available, else CPU). Ignored with `cpu_offload`.
        cpu_offload: ``enable_model_cpu_offload`` (each component moves to the GPU only while it runs).
        adapters: a procseq multi-domain adapter file (``procseq train adapter``) to load, ``"none"`` for
            none; default: the folder's installed ``adapters/adapters.safetensors`` when there is one
            (the embedded model ships the asymmetric LoRA of its adapter domains).
        pipeline_class: a :class:`ProcessPipeline` subclass to instantiate instead.
    """
    from procseq.adapters import load_adapters
    from procseq.pipelines.text_to_sequence import ProcessPipeline

    location = resolve_model(model)
    if adapters is None:
        adapter_file = installed_adapters(location) if Path(location).is_dir() else None
    elif str(adapters).lower() == "none":
        adapter_file = None
    else:
        adapter_file = Path(adapters).expanduser()
        if not adapter_file.is_file():
            raise FileNotFoundError(f"No adapter file {adapter_file}; pass a .safetensors written by "
                                    "`procseq train adapter` (OUTPUT_DIR/model/adapters.safetensors) or 'none'.")
    torch_dtype = DTYPES.get(dtype, dtype) if isinstance(dtype, str) else dtype
    if not isinstance(torch_dtype, torch.dtype):
        raise ValueError(f"Unknown dtype {dtype!r}; use one of {sorted(DTYPES)}.")
    try:
        pipe = (pipeline_class or ProcessPipeline).from_pretrained(location, dtype=torch_dtype)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"Could not load a Flux pipeline from {location}: {err}") from err
    if adapter_file is not None:
        load_adapters(pipe.transformer, adapter_file)
    if cpu_offload:
        pipe.enable_model_cpu_offload()
    else:
        pipe.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    pipe.set_progress_bar_config(disable=None)
    return pipe
