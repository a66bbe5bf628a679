"""Tensor and blob codecs: byte planes + zstd, integer deltas, dtype-cast prediction."""
