"""Audio outputs ("sinks"): local speakers, the OBS browser-source websocket, wav files.

Importing this package is cheap: sounddevice is imported lazily by ``LocalSink.start()``.
"""
