"""py-spy helpers for the benchmarks: record a running process, summarise where it spent time.

py-spy samples every thread of the target (cProfile sees only the thread that started it,
and maild does its database work in ``asyncio.to_thread`` workers). Install it with
``.venv/bin/pip install py-spy``. Summarise a recording made earlier with::

    .venv/bin/python benchmarks/profiling.py /tmp/ingest.spy
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

THREAD_FRAME = ("thread ", "process ")
REPO = Path(__file__).resolve().parent.parent


def start_py_spy(pid: int, out: Path, rate: int = 100) -> subprocess.Popen[bytes]:
    """Attach py-spy to a process, collapsed stacks to `out`; stop it with stop_py_spy."""
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if exe is None:
        raise SystemExit("profiling needs py-spy (.venv/bin/pip install py-spy)")
    cmd = [exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
           "--threads", "--subprocesses", "--nonblocking", "--output", str(out)]
    print(f"  profiling: {shlex.join(cmd)}")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # let it attach before the measured work starts
    return proc


def stop_py_spy(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def summarise(path: Path, top: int = 25, focus: str = "maild/") -> None:
    """Print self and inclusive sample shares per function from py-spy's collapsed stacks."""
    if not path.exists():
        print(f"  py-spy wrote nothing to {path}")
        return
    own = Counter[str]()
    incl = Counter[str]()
    threads = Counter[str]()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        frames = stack.split(";")
        named = [f for f in frames if f.startswith(THREAD_FRAME)]
        if named:
            threads[named[0]] += count
        frames = [f for f in frames if not f.startswith(THREAD_FRAME)]
        total += count
        if not frames:
            continue
        own[short(frames[-1])] += count
        for f in {short(f) for f in frames}:
            incl[f] += count
    if not total:
        print(f"  py-spy: no samples in {path}")
        return
    print(f"\n  py-spy: {total} samples in {path}")
    print("  samples per thread:")
    for name, n in threads.most_common(10):
        print(f"    {n / total:6.1%}  {name}")
    print("  top self time (leaf frames):")
    for name, n in own.most_common(top):
        print(f"    {n / total:6.1%}  {name}")
    print(f"  top inclusive time ({focus} frames):")
    shown = 0
    for name, n in incl.most_common():
        if focus in name and shown < top:
            print(f"    {n / total:6.1%}  {name}")
            shown += 1


def short(frame: str) -> str:
    """'func (/…/site-packages/pkg/mod.py:12)' → 'pkg/mod.py:func'."""
    m = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame)
    if not m:
        return frame
    func, path = m.groups()
    for marker in ("site-packages/", "/lib/python3.11/", f"{REPO}/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{func}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recording", type=Path, help="py-spy --format raw output")
    ap.add_argument("--top", type=int, default=25, help="functions to list (25)")
    ap.add_argument("--focus", default="maild/",
                    help="list inclusive time of frames whose path contains this (maild/)")
    a = ap.parse_args(argv)
    summarise(a.recording, a.top, a.focus)
    return 0


if __name__ == "__main__":
    sys.exit(main())
