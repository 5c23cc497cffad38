"""How a :class:`~procseq.pipelines.text_to_sequence.ProcessPipeline` is a diffusers folder: loading one (with
procseq's multi-domain adapters) and saving one that stock diffusers loads, with everything the pipeline carries.

``save_pretrained`` writes the base model as ``FluxPipeline`` does, then procseq's parts beside it: ``procseq.json``
(the model's defaults), ``adapters/adapters.safetensors`` (multi-domain adapters), procseq's own LoRAs
(``known_frames/``, ``regional/``, ``frame_by_frame/``), ``pipeline.py`` with ``model_index.json`` naming
``ProcessPipeline`` (:mod:`procseq.models.pipeline_index`) and a model card (``README.md``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from procseq.adapters.routing import adapter_layers
from procseq.conditioning.loras import FRAME_BY_FRAME, KINDS, LORA_FILE
from procseq.models.peft_detach import peft_adapters_detached

logger = logging.getLogger(__name__)


class ProcseqFolderMixin:
    """``from_pretrained`` / ``save_pretrained`` of procseq's diffusers folders, for a ``FluxPipeline`` subclass with
    procseq's ``defaults``, ``adapter_domains`` and LoRA registry ``loras`` (mixed in before ``FluxPipeline``)."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path | None = None, **kwargs: Any) -> Any:
        """``FluxPipeline.from_pretrained``, where ``"procseq-tiny"`` (or None) is the embedded model.

        `adapters` (keyword): procseq's multi-domain adapter file to load; default the folder's installed
        ``adapters/adapters.safetensors`` when there is one, ``"none"`` for none (:func:`~procseq.models.loading.
        resolve_adapters`), so a folder saved with :meth:`save_pretrained` comes back with every domain it had.
        """
        from procseq.models.loading import resolve_adapters, resolve_model

        adapters = kwargs.pop("adapters", None)
        location = resolve_model(pretrained_model_name_or_path)
        adapter_file = resolve_adapters(location, adapters)
        pipe = super().from_pretrained(location, **kwargs)
        if isinstance(pipe, ProcseqFolderMixin):
            pipe._adapters_resolved = adapter_file is None  # "none", or no installed file: nothing to load later
            pipe.ensure_adapters(adapter_file)
        return pipe

    _adapters_resolved: bool = False

    def ensure_adapters(self, adapter_file: str | Path | None = None) -> None:
        """Load procseq's multi-domain adapters once: `adapter_file`, else the model folder's installed one.

        :meth:`from_pretrained` calls it with the file it resolved; a pipeline that ``DiffusionPipeline.
        from_pretrained`` built calls it on first use (its folder is known only after construction).
        """
        if self._adapters_resolved:
            return
        self._adapters_resolved = True
        if adapter_layers(self.transformer):
            return
        from procseq.adapters import load_adapters
        from procseq.models.loading import installed_adapters

        folder = self.model_folder
        adapter_file = adapter_file or (installed_adapters(folder) if folder is not None else None)
        if adapter_file is not None:
            load_adapters(self.transformer, adapter_file)

    @property
    def model_folder(self) -> Path | None:
        """The local folder the pipeline was loaded from, if any."""
        name = getattr(self.config, "_name_or_path", None)
        return Path(name) if name and Path(name).is_dir() else None

    def procseq_loras(self) -> list[dict[str, Any]]:
        """procseq's own LoRAs of this pipeline, each loaded (``source="loaded"``: its file and metadata) or
        a folder copied as it is (``source="shipped"``: shipped in the model folder and not loaded yet, or the
        frame-by-frame folder with its step embedding): the condition LoRA (``known_frames/``), the regional
        LoRA (``regional/``) and the frame-by-frame weights (``frame_by_frame/``). What :meth:`save_pretrained`
        writes beside the base model."""
        found = []
        for kind in KINDS.values():
            loaded, shipped = self.loras.get(kind), self.loras.shipped(kind)
            entry = {"folder": kind.folders[0], "adapter": kind.name, "meta_file": kind.metas[0]}
            if loaded is not None and kind is not FRAME_BY_FRAME:
                found.append({**entry, "source": "loaded", "path": loaded.file, "meta": dict(loaded.meta)})
            elif loaded is not None or shipped is not None:  # a folder copied as it is (frame by frame: with its
                found.append({**entry, "source": "shipped", "path": loaded.folder if loaded else shipped})  # embedding)
        return found

    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> None:
        """Save a diffusers folder stock ``FluxPipeline`` loads, plus procseq's own parts beside it:
        ``procseq.json`` (the model's defaults), ``adapters/adapters.safetensors`` (multi-domain adapters)
        and ``known_frames/`` (the condition LoRA), so ``from_pretrained`` gives the same pipeline back."""
        import dataclasses
        import shutil
        import tempfile

        from procseq.adapters import load_adapters, remove_adapters, save_adapters
        from procseq.models.loading import ADAPTERS_FILE, PROCSEQ_CONFIG
        from procseq.models.pipeline_index import mark_procseq_folder

        out = Path(save_directory)
        self.ensure_adapters()
        loras = self.procseq_loras()
        # peft LoRAs (outermost) out while the base weights are written, back in afterwards, all of them as they were
        with tempfile.TemporaryDirectory() as tmp, \
                peft_adapters_detached(self.transformer, self.text_encoder, self.text_encoder_2) as names:
            others = [n for n in names if n not in {lora["adapter"] for lora in loras}]
            if others:
                logger.warning("save_pretrained writes the base model only: the LoRA adapter(s) %s stay loaded "
                               "but are not saved; write them with `save_lora_weights`.", others)
            adapter_file = None
            if adapter_layers(self.transformer):
                adapter_file = save_adapters(self.transformer, Path(tmp) / "adapters.safetensors")
                remove_adapters(self.transformer)
            try:
                super().save_pretrained(out, **kwargs)
            finally:
                if adapter_file is not None:
                    load_adapters(self.transformer, adapter_file)
            if adapter_file is not None:
                (out / ADAPTERS_FILE).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(adapter_file, out / ADAPTERS_FILE)
        for lora in loras:
            dst = out / lora["folder"]
            if lora["source"] == "shipped":  # not loaded yet (they load on first use): the model's folder as it is
                if dst.resolve() != lora["path"].resolve():
                    shutil.copytree(lora["path"], dst, dirs_exist_ok=True)
                continue
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(lora["path"], dst / LORA_FILE)
            (dst / lora["meta_file"]).write_text(json.dumps(lora["meta"], indent=2) + "\n")
        record = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self.defaults).items()
                  if k != "from_config"}  # how the defaults were found, not a default
        (out / PROCSEQ_CONFIG).write_text(json.dumps(record, indent=2) + "\n")
        mark_procseq_folder(out)
        self.write_model_card(out, record)

    def write_model_card(self, out: Path, settings: dict[str, Any]) -> None:
        """``out/README.md``: the card of the folder this pipeline was loaded from when it has one (the embedded
        model's, with its scores), else one written from the pipeline's domains and settings."""
        import shutil

        from procseq.cards import model_card

        source = self.model_folder / "README.md" if self.model_folder is not None else None
        if source is not None and source.is_file():
            if source.resolve() != (out / "README.md").resolve():
                shutil.copyfile(source, out / "README.md")
            return
        name = self.model_folder.name if self.model_folder is not None else out.name
        (out / "README.md").write_text(model_card(name, self.defaults.domains, self.adapter_domains, settings))


__all__ = ["ProcseqFolderMixin"]
