"""Logging: configured once by the CLI. Human-readable on a TTY, JSON lines otherwise.

One path for every line: structlog's loggers and the standard library's (the engine modules, aiohttp, watchfiles)
go through the same processors and one stderr handler, so each line has ``level``, ``timestamp`` and ``logger`` in
both modes. watchfiles' own chatter ("1 change detected") is demoted to debug.
"""

from __future__ import annotations

import logging
import sys

import structlog

DEMOTED_LOGGERS = ("watchfiles",)  # their info lines are debug for us


class _Demote(logging.Filter):
    """On the handler: records of ``DEMOTED_LOGGERS`` (and their children) below WARNING become DEBUG, shown only
    when debug is on."""

    def __init__(self, show: bool) -> None:
        super().__init__()
        self.show = show

    def filter(self, record: logging.LogRecord) -> bool:
        demoted = any(record.name == n or record.name.startswith(n + ".") for n in DEMOTED_LOGGERS)
        if demoted and record.levelno < logging.WARNING:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return self.show
        return True


def configure(level: str = "info", json: bool | None = None) -> None:
    lvl = getattr(logging, level.upper(), logging.INFO)
    as_json = (not sys.stderr.isatty()) if json is None else json
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=False),
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.PositionalArgumentsFormatter()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(_Demote(show=lvl <= logging.DEBUG))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(lvl)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
