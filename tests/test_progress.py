"""Long loops report progress: a bar on a terminal, one line per step otherwise."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from pipeline.progress import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_output_gets_one_line_per_step(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="pipeline"):
        assert list(progress(["fp32", "int8"], "compress: build")) == ["fp32", "int8"]
    assert [record.getMessage().rsplit(" (", 1)[0] for record in caplog.records] == [
        "compress: build 1/2 fp32",
        "compress: build 2/2 int8",
    ]


def test_a_terminal_gets_a_bar_and_no_lines(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with caplog.at_level(logging.INFO, logger="pipeline"):
        assert list(progress(["fp32", "int8"], "compress: build")) == ["fp32", "int8"]
    shown = terminal.getvalue()
    assert "compress: build" in shown and "/2 [" in shown and "int8" in shown  # label, count and step name
    assert caplog.records == []
