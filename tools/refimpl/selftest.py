#!/usr/bin/env python3
"""selftest: run payauth_ref.py on every hand-made case under tools/refimpl/cases/.

    python3 tools/refimpl/selftest.py [--bin CMD] [CASE ...]

A case folder holds accounts.csv, tokens.csv, traffic.csv and either
  expected/outcomes.csv + expected/balances.csv   (compared byte for byte), or
  expect_error                                    (exit 2, stderr contains its first line, and
                                                   no output folder is created).
Expected files were derived by hand from DOMAIN.md (each case's NOTES.md shows the working).
--bin runs another replayer instead, e.g. --bin 'target/release/payauth replay {data} {out}'
(the placeholders are substituted), so the same cases can check the Rust binary.
Exits 1 on any mismatch.
"""

import argparse
import os
import shlex
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = os.path.join(HERE, "cases")
REF = [sys.executable, os.path.join(HERE, "payauth_ref.py"), "{data}", "{out}"]


def run_case(name, cmd):
    data = os.path.join(CASES, name)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out")
        argv = [a.replace("{data}", data).replace("{out}", out) for a in cmd]
        p = subprocess.run(argv, capture_output=True, text=True)
        err_file = os.path.join(data, "expect_error")
        if os.path.exists(err_file):
            want = open(err_file).read().splitlines()[0]
            problems = []
            if p.returncode != 2:
                problems.append(f"exit {p.returncode}, want 2")
            if want not in p.stderr:
                problems.append(f"stderr {p.stderr.strip()!r} lacks {want!r}")
            if os.path.exists(out) and os.listdir(out):
                problems.append("output was written")
            return problems
        if p.returncode != 0:
            return [f"exit {p.returncode}: {p.stderr.strip()}"]
        problems = []
        for f in ("outcomes.csv", "balances.csv"):
            want = open(os.path.join(data, "expected", f), newline="").read()
            try:
                got = open(os.path.join(out, f), newline="").read()
            except OSError:
                problems.append(f"{f} missing")
                continue
            if got != want:
                problems.append(f"{f} differs:\n" + diff(want, got))
        return problems


def diff(want, got):
    import difflib
    return "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True),
                                        "expected", "got", n=1))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", help="replayer command with {data} and {out} placeholders")
    p.add_argument("cases", nargs="*")
    args = p.parse_args()
    cmd = shlex.split(args.bin) if args.bin else REF
    names = args.cases or sorted(os.listdir(CASES))
    failed = 0
    for name in names:
        problems = run_case(name, cmd)
        if problems:
            failed += 1
            print(f"FAIL {name}")
            for pr in problems:
                print("  " + pr.replace("\n", "\n  "))
        else:
            print(f"ok   {name}")
    print(f"{len(names) - failed}/{len(names)} cases passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
