"""Summarise py-spy collapsed-stack files: where the samples went.

    python -m tests.benchmarks.profile_summary DIR/phase-*.txt [--top 25]

Prints the share of samples that pass through each module of the package and each library
(inclusive), and the functions that hold the most samples themselves (self).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def area(path: str) -> str:
    """Name the module (ours) or the library a file belongs to."""
    if "sharepoint_proxy/" in path:
        return "sharepoint_proxy." + path.rsplit("sharepoint_proxy/", 1)[1].removesuffix(".py")
    if "site-packages/" in path:
        return path.rsplit("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    match = re.search(r"python3\.\d+/(.+)", path)
    if match:
        return "stdlib:" + match.group(1).split("/", 1)[0].removesuffix(".py")
    return path


def summarize(files: list[Path], top: int) -> str:
    """Return the report for the collapsed stacks in `files`."""
    total = 0
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for file in files:
        for line in file.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [_FRAME.match(f) for f in stack.split(";")]
            parsed = [(m.group("function"), m.group("file")) for m in frames if m]
            if not parsed:
                continue
            total += count
            for name in {area(path) for _, path in parsed}:
                inclusive[name] += count
            function, path = parsed[-1]
            own[f"{function} ({area(path)})"] += count
    lines = [f"{total} samples", "", "inclusive share by module/library:"]
    lines += [f"  {share / total:6.1%}  {name}" for name, share in inclusive.most_common(40)]
    lines += ["", f"top {top} functions by own samples:"]
    lines += [f"  {share / total:6.1%}  {name}" for name, share in own.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    """Print the summary of the files named on the command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(summarize(args.files, args.top))


if __name__ == "__main__":
    main()
