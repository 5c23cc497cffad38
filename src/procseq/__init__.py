"""procseq: procedural sequences on the FLUX.1 transformer."""

from procseq.machine import prefer_passive_openmp

prefer_passive_openmp()  # before torch loads: OpenMP threads sleep instead of spinning on a shared machine
