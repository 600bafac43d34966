"""Quantization (W8A8 with calibration, INT4 weight-only): installed as sana_edge.quant."""
