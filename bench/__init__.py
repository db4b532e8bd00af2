"""Benchmarks that span both halves of the pipeline (tools, not stages): they may import
`preprocess/`, `shards/` and `train/`, which import nothing from here."""
