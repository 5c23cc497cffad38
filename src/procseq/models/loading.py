"""Find and load a Flux checkpoint in diffusers folder format: embedded, local folder, or hub id."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from procseq.domain_prompt import domain_prompts
from procseq.machine import Choice, choose_dtype, detect
from procseq.models.headers import transformer_params

if TYPE_CHECKING:  # torch loads only when a pipeline does (a fast command line)
    import torch

EMBEDDED_DIR = Path(__file__).resolve().parent.parent / "embedded" / "procseq-tiny"
EMBEDDED_NAME = "procseq-tiny"
ADAPTERS_FILE = "adapters/adapters.safetensors"
PROCSEQ_CONFIG = "procseq.json"
DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16", "auto": "auto"}
MAKEANYTHING_FRAME_SIZE = {2: 512, 3: 352}
"""MakeAnything's frame side by grid columns: 2x2 grids of 512 px (1024), 3x3 grids of 352 px (1056)."""


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
        domain_prefix: the model was trained with the domain phrase in front of every prompt
            (:mod:`procseq.domain_prompt`), so the pipeline writes its prompts the same way.
        step_count_prefix: ... and with the number of steps in that phrase ("... process in 9 steps: ").
        step_tokens: the model reads the plan's step captions in every layout, each padded to this many T5 tokens
            (procseq-tiny v3 on); None: trained before that (the grid reads the prompt alone).
        grid_step_text: False: a model with `step_tokens` whose grid was trained on the prompt alone (the other layouts
            read the captions); None: the grid reads them whenever `step_tokens` is set.
        known_mode: how the base itself learnt known frames (``inplace``: a model trained on every layout with known
            frames at random cells needs no condition LoRA); None: it did not.
    """

    frame_size: int = 512
    max_frames: int = 16
    max_sequence_length: int = 512
    num_inference_steps: int = 28
    guidance_scale: float = 3.5
    true_cfg_scale: float = 1.0
    domains: tuple[str, ...] = ()
    text_padding: str = "max"
    domain_prefix: bool = False
    step_count_prefix: bool = False
    step_tokens: int | None = None
    grid_step_text: bool | None = None
    known_mode: str | None = None
    from_config: bool = False

    @classmethod
    def from_folder(cls, folder: Path | None) -> "ModelDefaults":
        """Defaults from `folder`/procseq.json, or the FLUX.1 / MakeAnything values when there is none."""
        path = folder / PROCSEQ_CONFIG if folder is not None else None
        if path is None or not path.is_file():
            return cls()
        try:
            record: dict[str, Any] = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path} is not valid JSON ({err}); the model folder is damaged.") from err
        if not isinstance(record, dict):
            raise ValueError(f"{path} must be a JSON object (procseq's model settings), not a "
                             f"{type(record).__name__}; the model folder is damaged.")
        known = {k: record[k] for k in cls.__dataclass_fields__ if k in record}
        if "domains" in known:
            known["domains"] = tuple(known["domains"])
        return cls(**known, from_config=True)

    def model_prompts(self, prompts: list[str], domain: str, num_frames: int) -> list[str]:
        """`prompts` as this model reads them: with the domain phrase (and step count) in front when it was
        trained so (:mod:`procseq.domain_prompt`), else unchanged."""
        return domain_prompts(prompts, domain, self.domain_prefix, num_frames if self.step_count_prefix else None)

    def frame_size_for(self, num_frames: int) -> int:
        """The frame size for `num_frames`: the native size from procseq.json, else MakeAnything's for the grid
        (512 px for 2x2, 352 px for 3x3: ~1024-px grids) and 1024-px grids for longer sequences."""
        if self.from_config and (self.max_frames <= 9 or num_frames <= 4):
            return self.frame_size
        cols = math.ceil(math.sqrt(num_frames))
        if not self.from_config and cols in MAKEANYTHING_FRAME_SIZE:
            return MAKEANYTHING_FRAME_SIZE[cols]
        return max(16, min(self.frame_size, (1024 // cols) // 16 * 16))

    def describe_frame_size(self, num_frames: int) -> str:
        """Where the frame size for `num_frames` comes from, in words (the CLI prints it)."""
        size = self.frame_size_for(num_frames)
        if self.from_config:
            return f"frame size {size} px (the model's procseq.json)"
        return (f"frame size {size} px for {num_frames} frames (no procseq.json in the model folder: MakeAnything's "
                "sizes, 512 px for 4 frames, 352 px for 9; pass --frame-size to change)")


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
    if not path.exists() and str(model).endswith(("/", "\\")):
        raise FileNotFoundError(f"No model folder {model}; pass an existing diffusers folder or a hub id (owner/name).")
    if path.exists():
        if not path.is_dir() or not (path / "model_index.json").is_file():
            raise FileNotFoundError(
                f"{path} is not a diffusers model folder (no model_index.json); pass a folder saved with "
                "save_pretrained, or a hub id such as black-forest-labs/FLUX.1-dev."
            )
        try:
            index = json.loads((path / "model_index.json").read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}/model_index.json is not valid JSON ({err}); the model folder is damaged.") from err
        if not isinstance(index, dict):
            raise ValueError(f"{path}/model_index.json must be a JSON object (a diffusers model index), "
                             f"not a {type(index).__name__}; the model folder is damaged.")
        return str(path)
    if str(model).count("/") == 1 and not str(model).startswith((".", "/", "~")):
        return str(model)  # hub id; loading needs network access
    raise FileNotFoundError(f"Model {model!r} is neither a local folder nor a hub id (owner/name).")


def check_device(device: str | torch.device | None, cpu_offload: bool = False) -> None:
    """Refuse a device this machine cannot run on (unknown, meta, or an absent accelerator) before loading."""
    import torch

    if cpu_offload and not torch.cuda.is_available():
        raise ValueError("--cpu-offload moves weights to a CUDA GPU while they run, and no CUDA GPU is visible; "
                         "leave it off on a CPU.")
    if device is None:
        return
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"Unknown device {device!r}; use 'cpu' or 'cuda' (or 'cuda:N').") from err
    if dev.type == "meta":
        raise ValueError("The 'meta' device holds no data and cannot generate; use 'cpu' or 'cuda'.")
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"--device {device}: no such CUDA GPU is visible ({torch.cuda.device_count()} found); "
                         "use --device cpu.")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {device}: MPS is not available here; use --device cpu.")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"Unsupported device {device!r}; use 'cpu' or 'cuda'.")


def installed_adapters(location: str | Path) -> Path | None:
    """The adapter file installed in a model folder (``adapters/adapters.safetensors``), if any."""
    path = Path(location) / ADAPTERS_FILE
    return path if path.is_file() else None


def resolve_adapters(location: str | Path, adapters: str | Path | None) -> Path | None:
    """The adapter file to load: `adapters`, none for ``"none"``, else the folder's installed one (if any)."""
    if adapters is None:
        return installed_adapters(location) if Path(location).is_dir() else None
    if str(adapters).lower() == "none":
        return None
    path = Path(adapters).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"No adapter file {path}; pass a .safetensors written by "
                                "`procseq train adapter` (OUTPUT_DIR/model/adapters.safetensors) or 'none'.")
    return path


def precheck(model: str | Path | None, domain: str | None, frames: int, frame_size: int | None = None,
             adapters: str | Path | None = None, allow_unseen: bool = False, check_frames: bool = True) -> ModelDefaults:
    """Reject a request the model cannot serve before anything heavy loads (reads only json and file headers).

    Checks the domain against the model's ``procseq.json`` domains and its adapter file's domains, the number
    of frames against ``max_frames`` (unless `check_frames` is False: a mode with its own limit) and the frame size against the VAE's patch multiple; the pipeline
    checks the same again once loaded. Returns the model's defaults. A hub id is not checked here.
    """
    from procseq.models.headers import adapter_domains, vae_scale_factor

    location = resolve_model(model)
    folder = Path(location)
    if not folder.is_dir():
        return ModelDefaults()
    d = ModelDefaults.from_folder(folder)
    adapter_file = resolve_adapters(location, adapters)
    known = list(d.domains)
    if known and adapter_file is not None:
        known += [x for x in adapter_domains(adapter_file) if x not in known]
    if domain is not None and known and domain not in known and not allow_unseen:
        raise ValueError(f"Unknown domain {domain!r} for this model; choose one of: {', '.join(known)}.")
    if check_frames and d.from_config and not 2 <= frames <= d.max_frames:
        hint = "; for more steps use --mode regional" if frames > d.max_frames else ""
        raise ValueError(f"frames must be between 2 and {d.max_frames} for this model, got {frames}{hint}.")
    scale = vae_scale_factor(folder)
    if frame_size is not None and scale is not None and (frame_size < 2 * scale or frame_size % (2 * scale)):
        raise ValueError(f"frame_size must be a positive multiple of {2 * scale} for this model, got {frame_size}.")
    return d


def torch_dtype(dtype: "str | torch.dtype", location: str | Path, device: str) -> tuple["torch.dtype", Choice]:
    """The torch dtype for a dtype name (``"auto"``: :func:`procseq.machine.choose_dtype` for this model/machine)."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype, Choice(str(dtype).replace("torch.", ""), "requested")
    name = DTYPES.get(str(dtype))
    if name is None:
        raise ValueError(f"Unknown dtype {dtype!r}; use one of {sorted(DTYPES)}.")
    params = transformer_params(location) if Path(location).is_dir() else None
    choice = choose_dtype(name, params, device, detect())
    return getattr(torch, choice.value), choice
