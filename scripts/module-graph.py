#!/usr/bin/env python3
"""The module graph: each of this package's modules and the package's own modules it depends
on, read from Package.swift. `--check README.md` exits 1 when the README's copy (between the
`module-graph` markers) differs, so the README cannot drift from the package; `--write
README.md` rewrites it. With no argument it prints the graph."""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- module-graph: scripts/module-graph.py --write README.md -->", "<!-- /module-graph -->"


def graph() -> str:
    text = (ROOT / "Package.swift").read_text()
    targets = {}
    # Each target declaration up to the next one; its own modules are the quoted names in its
    # dependencies that are targets of this package (products of other packages are not).
    blocks = re.split(r"\n\s*\.(?=(?:target|executableTarget|testTarget|systemLibrary)\()", text)
    for block in blocks[1:]:
        kind = block.split("(", 1)[0]
        name = re.search(r'name:\s*"([^"]+)"', block).group(1)
        deps = re.search(r"dependencies:\s*\[(.*?)\]\s*,\s*(?:path:|swiftSettings:|\)|$)", block, re.S)
        quoted = re.findall(r'(?<!name: )"([A-Za-z0-9-]+)"', re.sub(r"\.product\([^)]*\)", "", deps.group(1))) if deps else []
        targets[name] = (kind, quoted)
    own = set(targets)
    lines = []
    for name, (kind, deps) in targets.items():
        if kind in ("testTarget", "systemLibrary"):
            continue
        mine = [d for d in deps if d in own]
        lines.append(f"{name:<22} -> {', '.join(mine) if mine else '(none of ours)'}")
    return "```\n" + "\n".join(lines) + "\n```"


def main() -> int:
    current = graph()
    if len(sys.argv) == 1:
        print(current)
        return 0
    mode, path = sys.argv[1], Path(sys.argv[2])
    text = path.read_text()
    if BEGIN not in text or END not in text:
        print(f"{path}: no module-graph markers", file=sys.stderr)
        return 1
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    wanted = head + BEGIN + "\n" + current + "\n" + END + tail
    if mode == "--write":
        path.write_text(wanted)
        return 0
    if wanted != text:
        print(f"{path}: the module graph differs from Package.swift; run scripts/module-graph.py --write {path}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
