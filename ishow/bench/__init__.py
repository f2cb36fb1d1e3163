"""Benchmark tooling behind `ishow bench` (GPU machine only: torch, numpy, safetensors)."""
