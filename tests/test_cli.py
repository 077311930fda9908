"""The shared CLI pieces: one-line usage errors, one-line runtime errors, exit statuses."""

from __future__ import annotations

import pytest

from respike_neuro.cli import ArgumentParser, guarded


def _raise(exc: BaseException):
    def body() -> int:
        raise exc

    return body


def test_guarded_errors_are_one_line_with_their_status(capsys):
    assert guarded(lambda: 0, errors=(ValueError,)) == 0
    assert guarded(_raise(ValueError("bad input x\nsecond line")), errors=(ValueError,), status=2) == 2
    assert capsys.readouterr().err == "error: bad input x\n"
    assert guarded(_raise(KeyError("class_names")), errors=(KeyError,), prefix="prog: error") == 1
    assert capsys.readouterr().err == "prog: error: class_names\n"  # not "'class_names'"
    assert guarded(_raise(KeyboardInterrupt()), errors=(), interrupted="stopped; rerun") == 130
    assert capsys.readouterr().err == "error: stopped; rerun\n"
    with pytest.raises(ZeroDivisionError):  # not an expected error: a bug keeps its traceback
        guarded(_raise(ZeroDivisionError()), errors=(ValueError,))


def test_usage_errors_are_one_line_exit_2(capsys):
    p = ArgumentParser(prog="tool")
    p.add_argument("--n", type=int)
    with pytest.raises(SystemExit) as exc:
        p.parse_args(["--n", "x"])
    assert exc.value.code == 2
    assert capsys.readouterr().err == "tool: error: argument --n: invalid int value: 'x'\n"
