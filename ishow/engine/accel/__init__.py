"""Acceleration for the F5 model: CUDA graphs, vocoder backends (fused, ONNX, TensorRT)."""
