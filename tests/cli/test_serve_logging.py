"""`tenantry serve`'s log lines: the standard formatter's text, made cheaper per record."""

from __future__ import annotations

import logging

from tenantry.cli.serve import LOG_FORMAT, _Formatter


def _record(created: float) -> logging.LogRecord:
    record = logging.LogRecord("tenantry.server.access", logging.INFO, "", 0, "%s", ("x",), None)
    record.created = created
    record.msecs = (created - int(created)) * 1000
    record.request_id = "req-1"
    return record


def test_lines_are_the_standard_formatters_across_seconds() -> None:
    ours, standard = _Formatter(LOG_FORMAT), logging.Formatter(LOG_FORMAT)
    # within one second, into the next, back to an earlier one (another thread's late record)
    for created in (1_800_000_000.001, 1_800_000_000.999, 1_800_000_001.5, 1_800_000_000.25):
        record = _record(created)
        assert ours.format(record) == standard.format(_record(created))
    assert ours.format(_record(1_800_000_001.5)).endswith(
        ",500 INFO tenantry.server.access [req-1] x"
    )
