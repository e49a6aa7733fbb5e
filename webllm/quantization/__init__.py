"""Quantization: weight formats (formats.py) and the modes that choose them (quantize.py)."""
