"""Summarise the profiles that ``python -m benchmarks --py-spy DIR`` / ``--cprofile DIR`` write.

    python -m benchmarks.profile_summary FILE [FILE ...] [--top N]

FILE is a py-spy ``raw`` (collapsed stacks) file, ``*.txt``, or a cProfile
``*.pstats`` file. For py-spy it prints the share of samples the process was
idle (waiting in the selector), then the top functions by self samples (the
function was on top of the stack: time spent in its own code and in the C
calls it makes) and by inclusive samples (the function was anywhere on the
stack), as a share of the busy (non-idle) samples. Line numbers are folded
into functions.
"""

from __future__ import annotations

import argparse
import pstats
import re
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
IDLE_LEAVES = ("select (selectors.py)", "EpollSelector.select (selectors.py)")


def function_of(frame: str) -> str:
    """``func (file:line)`` -> ``func (file)``."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    return f"{match['func']} ({match['file']})"


def read_collapsed(path: Path, lines: bool = False) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        if lines:
            # keep the leaf's line, fold the rest (idle detection needs folded names)
            folded = [function_of(f) for f in frames]
            folded[-1] = f"{folded[-1]}\t{frames[-1].strip()}"
            stacks.append((folded, int(count)))
        else:
            stacks.append(([function_of(f) for f in frames], int(count)))
    return stacks


def summarize_lines(path: Path, top: int) -> str:
    """The hottest leaf lines (self samples by source line)."""
    stacks = read_collapsed(path, lines=True)
    counts: Counter[str] = Counter()
    busy = 0
    for frames, n in stacks:
        func, _, leaf = frames[-1].partition("\t")
        if func in IDLE_LEAVES:
            continue
        busy += n
        counts[leaf] += n
    out = [f"  top {top} source lines by self samples (% of busy):"]
    for leaf, n in counts.most_common(top):
        out.append(f"    {100 * n / max(busy, 1):5.1f}%  {leaf}")
    return "\n".join(out)


def summarize_py_spy(path: Path, top: int) -> str:
    stacks = read_collapsed(path)
    total = sum(n for _, n in stacks)
    if not total:
        return f"{path}: no samples"
    idle = sum(n for frames, n in stacks if frames and frames[-1] in IDLE_LEAVES)
    busy = total - idle
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    for frames, n in stacks:
        if frames and frames[-1] in IDLE_LEAVES:
            continue
        if frames:
            self_counts[frames[-1]] += n
        for func in set(frames):
            incl_counts[func] += n
    lines = [
        f"{path.name}: {total} samples, idle (in the selector) {100 * idle / total:.1f}%,"
        f" busy {busy}",
        f"  top {top} by self samples (% of busy):",
    ]
    for func, n in self_counts.most_common(top):
        lines.append(f"    {100 * n / max(busy, 1):5.1f}%  {func}")
    lines.append(f"  top {top} by inclusive samples (% of busy), below the event loop:")
    skip = (
        "asyncio/",
        "py_worker.py",
        "worker_io.py",
        "<module>",
        "runners.py",
        "Handle._run",
        "events.py",
    )
    shown = 0
    for func, n in incl_counts.most_common():
        if any(s in func for s in skip):
            continue
        lines.append(f"    {100 * n / max(busy, 1):5.1f}%  {func}")
        shown += 1
        if shown >= top:
            break
    return "\n".join(lines)


def summarize_pstats(path: Path, top: int) -> str:
    stats = pstats.Stats(str(path))
    raw = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values())
    rows = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    lines = [f"{path.name}: cProfile, {total:.3f} s of own time in profiled calls"]
    lines.append(f"  top {top} by own time:   calls      own s   cum s   function")
    for (file, line, func), (_cc, ncalls, tottime, cumtime, _callers) in rows:
        short = "/".join(Path(file).parts[-2:]) if file != "~" else "builtin"
        lines.append(
            f"    {100 * tottime / max(total, 1e-9):5.1f}%  {ncalls:>9}  {tottime:8.3f} {cumtime:7.3f}"
            f"   {func} ({short}:{line})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_summary")
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--lines", action="store_true", help="also the hottest source lines")
    args = parser.parse_args(argv)
    for path in args.files:
        if path.suffix == ".pstats":
            print(summarize_pstats(path, args.top))
        else:
            print(summarize_py_spy(path, args.top))
            if args.lines:
                print(summarize_lines(path, 2 * args.top))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
