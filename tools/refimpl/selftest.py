#!/usr/bin/env python3
"""selftest: run payauth_ref.py on every hand-made case under tools/refimpl/cases/.

    python3 tools/refimpl/selftest.py [--bin CMD] [CASE ...]

A case folder holds accounts.csv, tokens.csv, traffic.csv, optionally `args` (extra command-line
options, e.g. `--ttl-ns 10`, appended to the command), and either
  expected/outcomes.csv + expected/balances.csv   (compared byte for byte), or
  expect_error                                    (exit 2, stderr contains its first line, and
                                                   nothing is written; with --bin: any non-zero
                                                   exit, and stderr names the same file, line
                                                   and field in any wording).
Cases live in cases/ (default config) and cases-config/ (each with an `args` file).
Expected files were derived by hand from DOMAIN.md (each case's NOTES.md shows the working).
--bin runs another replayer instead, e.g. --bin 'target/debug/payauth replay {data} --out {out}'
(the placeholders are substituted), so the same cases can check the Rust binary.
Exits 1 on any mismatch.
"""

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
# cases/ run with the default config (harness/tests/crosscheck.rs replays them as they are);
# cases-config/ need the extra options in their `args` file.
CASE_DIRS = [os.path.join(HERE, "cases"), os.path.join(HERE, "cases-config")]
REF = [sys.executable, os.path.join(HERE, "payauth_ref.py"), "{data}", "{out}"]


def error_problems(want, p, strict):
    """strict (the oracle): exit 2 and `want` verbatim in stderr. Otherwise (another binary,
    other wording): a non-zero exit and the same file, line and field named somehow."""
    if strict:
        problems = [] if p.returncode == 2 else [f"exit {p.returncode}, want 2"]
        if want not in p.stderr:
            problems.append(f"stderr {p.stderr.strip()!r} lacks {want!r}")
        return problems
    problems = [] if p.returncode != 0 else ["malformed dataset was accepted (exit 0)"]
    m = re.match(r"(\S+): line (\d+)(?:: field `([^`]+)`)?", want)
    file, line, field = m.group(1), m.group(2), m.group(3)
    err = p.stderr
    if file not in err:
        problems.append(f"stderr does not name {file}: {err.strip()!r}")
    if f":{line}:" not in err and f"line {line}" not in err:
        problems.append(f"stderr does not name line {line}: {err.strip()!r}")
    if field and field not in err:
        problems.append(f"stderr does not name field {field}: {err.strip()!r}")
    return problems


def run_case(data, cmd, strict):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out")
        argv = [a.replace("{data}", data).replace("{out}", out) for a in cmd]
        args_file = os.path.join(data, "args")
        if os.path.exists(args_file):
            argv += shlex.split(open(args_file).read())
        p = subprocess.run(argv, capture_output=True, text=True)
        err_file = os.path.join(data, "expect_error")
        if os.path.exists(err_file):
            want = open(err_file).read().splitlines()[0]
            problems = error_problems(want, p, strict)
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
    all_cases = {n: os.path.join(d, n) for d in CASE_DIRS if os.path.isdir(d)
                 for n in os.listdir(d)}
    names = args.cases or sorted(all_cases)
    failed = 0
    for name in names:
        problems = run_case(all_cases[name], cmd, strict=not args.bin)
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
