"""The pipeline class a procseq model folder names, so diffusers' generic loader builds a :class:`ProcessPipeline`.

A diffusers folder records its pipeline class in ``model_index.json`` (``_class_name``). procseq's folders name
``ProcessPipeline`` and carry a one-line ``pipeline.py`` beside it:

* ``FluxPipeline.from_pretrained(folder)`` still loads the base components (stock diffusers, no procseq needed);
* with procseq imported, ``DiffusionPipeline.from_pretrained(folder)`` returns a ``ProcessPipeline``
  (:func:`procseq.pipelines.text_to_sequence.register_with_diffusers`);
* without it, ``DiffusionPipeline.from_pretrained(folder, custom_pipeline="pipeline", trust_remote_code=True)``
  does the same through diffusers' custom-pipeline mechanism (the file only imports procseq).
"""

from __future__ import annotations

import json
from pathlib import Path

from procseq.outputs import write_json_atomic, write_text_atomic

PIPELINE_CLASS = "ProcessPipeline"
PIPELINE_FILE = "pipeline.py"
PIPELINE_SOURCE = '''"""procseq's pipeline for this folder: DiffusionPipeline.from_pretrained(folder, custom_pipeline="pipeline",
trust_remote_code=True) loads it (pip install procseq). Stock FluxPipeline.from_pretrained(folder) needs no code."""

from procseq.pipelines.text_to_sequence import ProcessPipeline

__all__ = ["ProcessPipeline"]
'''


def mark_procseq_folder(folder: str | Path) -> Path:
    """Name :data:`PIPELINE_CLASS` in `folder`'s ``model_index.json`` and write :data:`PIPELINE_FILE`; returns `folder`."""
    folder = Path(folder)
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text())
    if index.get("_class_name") != PIPELINE_CLASS:
        index["_class_name"] = PIPELINE_CLASS
        write_json_atomic(index_path, index)
    write_text_atomic(folder / PIPELINE_FILE, PIPELINE_SOURCE)
    return folder


__all__ = ["PIPELINE_CLASS", "PIPELINE_FILE", "mark_procseq_folder"]
