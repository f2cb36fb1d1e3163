"""Traces the F5 engine of every Python process started with ``ISHOW_ENGINE_TRACE`` set and this folder on
``PYTHONPATH`` (see :mod:`tools.engine_trace`; the repository root must be on ``PYTHONPATH`` too)."""

import os

if os.environ.get("ISHOW_ENGINE_TRACE"):
    from tools.engine_trace import install

    install(os.environ["ISHOW_ENGINE_TRACE"])
