"""The fence around `FastData` (maild/inbound/smtp.py), whose `smtp_DATA` is aiosmtpd 1.4.6's
with the DATA loop replaced (maild/inbound/smtp_data.py) and calls aiosmtpd's private
`_reader`, `_set_post_data_state` and `_call_handler_hook`: aiosmtpd's own SMTP, LMTP and
smuggling test modules, run against `FastData`/`FastDataLMTP` (aiosmtpd's `SMTP`/`LMTP`
swapped out before the modules are imported), pass but for exactly the tests listed in
`EXPECTED_FAILURES`, each a deliberate difference. An aiosmtpd that changes those internals,
or the behaviour FastData copies, fails here by name instead of silently in production;
pyproject.toml also caps aiosmtpd below 1.5. (Kept because it is measured: see FastData.)
"""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import aiosmtpd
import pytest
from aiosmtpd.smtp import SMTP

from maild.inbound.smtp import FastData

ROOT = Path(__file__).resolve().parents[2]
THEIRS = Path(aiosmtpd.__file__).resolve().parent / "tests"
MODULES = ("test_smtp.py", "test_lmtp.py", "test_smtpsmuggling.py")
COLLECTED = 284  # 285 in aiosmtpd 1.4.6's three modules, less the deselected one below

# Fails on aiosmtpd's own SMTP too under pytest >= 8 (`pytest.warns` captures the warning
# before `caplog` sees its log record): not about FastData.
DESELECTED = "test_warn_authreqnotls"

_ERRORS = "maild answers 451 4.3.0 for an exception of its own, never 500 with its text"
_LINE = "maild's 500 says '5.5.2 Line too long (max N octets)', aiosmtpd's 'Line too long (see…)'"
EXPECTED_FAILURES = {
    "TestSMTPWithController::test_dots_escaped":
        "decode_data=True: FastData hands the handler bytes (maild runs decode_data=False)",
    "TestStrictASCII::test_data":
        "decode_data=True: the strict-ASCII 500 is part of decoding, which FastData skips",
    "TestSMTPWithController::test_long_line_leak":
        "mocks aiosmtpd.smtp.EMPTY_BARR, an internal of the DATA loop FastData replaces",
    "TestSMTPWithController::test_too_long_lines_then_too_long_body":
        "over both limits FastData answers 552 (size), aiosmtpd the 500 it met first",
    "TestSMTPWithController::test_data_line_too_long": _LINE,
    "TestSMTPWithController::test_long_line_double_count": _LINE,
    "TestSMTPWithController::test_too_long_line_delay_error": _LINE,
    "TestSMTPWithController::test_unexpected_errors": _ERRORS,
    "TestSMTPWithController::test_unexpected_errors_unhandled": _ERRORS,
    "TestSMTPWithController::test_unexpected_errors_custom_response": _ERRORS,
    "TestSMTPWithController::test_exception_handler_exception": _ERRORS,
    "TestSMTPWithController::test_exception_handler_undescribable": _ERRORS,
    "TestTimeout::test_timeout":
        "maild says 421 4.4.2 before it closes an idle session; aiosmtpd just closes",
}

# Run in a fresh interpreter: the swap must happen before aiosmtpd's test modules import
# `SMTP`, and it must not leak into this process's aiosmtpd.
SWAP = """
import sys
import aiosmtpd.controller, aiosmtpd.lmtp, aiosmtpd.smtp
from maild.inbound.smtp import FastData, FastDataLMTP
aiosmtpd.smtp.SMTP = aiosmtpd.controller.SMTP = FastData
aiosmtpd.lmtp.LMTP = FastDataLMTP
import pytest
sys.exit(pytest.main(sys.argv[1:]))
"""


def _outcomes(report: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for case in ET.parse(report).iter("testcase"):
        name = f"{case.get('classname', '').rpartition('.')[2]}::{case.get('name')}"
        kinds = {child.tag for child in case}
        out[name] = ("failed" if kinds & {"failure", "error"}
                     else "skipped" if "skipped" in kinds else "passed")
    return out


def test_aiosmtpd_own_tests_pass_on_fastdata(tmp_path: Path) -> None:
    for module in MODULES:
        assert (THEIRS / module).is_file(), (
            f"aiosmtpd {aiosmtpd.__version__} ships no {module}: FastData cannot be checked "
            "against this aiosmtpd; see maild/inbound/smtp.py before upgrading")
    try:
        import pytest_mock  # noqa: F401
    except ImportError:
        pytest.fail("aiosmtpd's tests need pytest-mock (pip install -e '.[test]')")
    report = tmp_path / "report.xml"
    args = [sys.executable, "-c", SWAP, "-q", "-p", "no:cacheprovider", "-c", os.devnull,
            "--rootdir", str(tmp_path), f"--junitxml={report}", "-o", "log_level=CRITICAL",
            *(str(THEIRS / m) for m in MODULES),
            "-k", f"not {DESELECTED}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    try:
        done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail("aiosmtpd's own tests hang on FastData (a session left unanswered): "
                    "FastData copies aiosmtpd 1.4.6's smtp_DATA; compare it with this aiosmtpd")
    assert report.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    outcomes = _outcomes(report)
    failed = {name for name, what in outcomes.items() if what == "failed"}
    assert failed == set(EXPECTED_FAILURES), (
        "aiosmtpd's own tests on FastData: "
        f"newly failing {sorted(failed - set(EXPECTED_FAILURES))}, "
        f"no longer failing {sorted(set(EXPECTED_FAILURES) - failed)}; "
        "FastData copies aiosmtpd 1.4.6's smtp_DATA: compare it with the installed aiosmtpd")
    assert len(outcomes) == COLLECTED, f"{len(outcomes)} tests, not {COLLECTED}: another aiosmtpd?"


def test_the_aiosmtpd_internals_fastdata_calls_are_there() -> None:
    """By name, what `FastData.smtp_DATA` reaches into (the suite above checks behaviour)."""
    loop = asyncio.new_event_loop()  # without one, aiosmtpd would make one and leave it open
    try:
        server = FastData(object(), loop=loop)
    finally:
        loop.close()
    for name in ("_set_post_data_state", "_call_handler_hook", "_reset_timeout",
                 "check_helo_needed", "check_auth_needed", "push", "_handle_client"):
        assert callable(getattr(SMTP, name, None)), f"aiosmtpd.smtp.SMTP.{name} is gone"
    for name in ("_timeout_duration", "envelope", "data_size_limit", "loop"):
        assert hasattr(server, name), f"aiosmtpd's SMTP no longer sets .{name}"
    made = inspect.getsource(SMTP._cb_client_connected)  # the streams, once connected
    for name in ("self._reader =", "self._writer ="):
        assert name in made, f"aiosmtpd's SMTP._cb_client_connected no longer sets {name[:-2]}"
