"""The F5-TTS model in plain PyTorch: DiT, sampler, Vocos vocoder, text and audio front ends, weights."""
