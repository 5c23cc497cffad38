"""procseq's pipeline for this folder: DiffusionPipeline.from_pretrained(folder, custom_pipeline="pipeline",
trust_remote_code=True) loads it (pip install procseq). Stock FluxPipeline.from_pretrained(folder) needs no code."""

from procseq.pipelines.text_to_sequence import ProcessPipeline

__all__ = ["ProcessPipeline"]
