#!/usr/bin/env python3
"""Runs SQL statements on chdb (an in-process ClickHouse) for the ClickHouse-26 test.

    chdb-run.py DATA_DIR STEPS.json RESULTS.json

STEPS.json is a list of {"sql": ...}; each runs in one chdb session on DATA_DIR (kept between
runs), a SELECT's rows as TabSeparated. RESULTS.json gets, for each step, {"ok": true,
"output": TEXT} or {"ok": false, "error": MESSAGE}: the Swift test decides what was expected.
A step's data comes from a file through the statement itself (INSERT ... FROM INFILE).
"""
import json
import sys

import chdb
from chdb import session


def main() -> int:
    data_dir, steps_path, results_path = sys.argv[1:4]
    with open(steps_path, encoding="utf-8") as f:
        steps = json.load(f)
    results = []
    s = session.Session(data_dir)
    try:
        for step in steps:
            try:
                out = s.query(step["sql"], "TabSeparated")
                results.append({"ok": True, "output": out.bytes().decode("utf-8", "surrogateescape") if out is not None else ""})
            except Exception as e:  # chdb raises ChdbError (or RuntimeError) with ClickHouse's message
                results.append({"ok": False, "error": str(e)})
    finally:
        s.close()
    with open(results_path, "w", encoding="utf-8") as f:
        json.dump({"chdb": chdb.__version__, "results": results}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
