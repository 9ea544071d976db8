"""Where the time goes, from py-spy's collapsed stacks (``py-spy record --format raw``).

    .venv/bin/python bench/stacks.py DIR/get-vendor-v1-profile-32c-1w.txt [--top 40]

Prints the share of samples each function is on the stack of (inclusive), and the share in
which it is the innermost frame (self), for the heaviest functions. ``bench/http.py --py-spy
DIR`` writes such files while wrk drives each request.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*?)(?::(?P<line>\d+))?\)$")


def short(frame: str) -> str:
    """``function (path/to/file.py:12)`` -> ``function (file.py)``: lines are merged."""
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    tail = "/".join(path.split("/")[-2:]) if "site-packages" in path else path.split("/")[-1]
    for root in ("vrm/", "vault/", "consent/", "intents/", "vendor_api/", "web/"):
        if f"/{root}" in path:
            tail = root + path.split(f"/{root}", 1)[1]
    return f"{m.group('func')} ({tail})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stacks", type=Path)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in args.stacks.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [short(f) for f in stack.split(";") if f]
        for frame in set(frames):
            inclusive[frame] += n
        if frames:
            own[frames[-1]] += n
    print(f"{total} samples")
    print(f"{'incl %':>7} {'self %':>7}  function")
    for frame, n in inclusive.most_common(args.top):
        print(f"{100 * n / total:7.1f} {100 * own[frame] / total:7.1f}  {frame}")


if __name__ == "__main__":
    main()
