"""procseq's experiment drivers: each measures one method on the synthetic corpus and writes a BENCHMARKS.md
table (experiments/README.md lists them). Run from the repository root: ``python -m experiments.NAME --help``."""
