#!/usr/bin/env python3
"""payauth_ref: an independent, plain reading of /work/shared/DOMAIN.md, used as a CI oracle.

    python3 tools/refimpl/payauth_ref.py DATASET_DIR OUT_DIR \
        [--ttl-ns N] [--window-ns N] [--retention-ns N]

Reads DATASET_DIR/{accounts,tokens,traffic}.csv, replays the traffic single-threaded in file
order and writes OUT_DIR/outcomes.csv and OUT_DIR/balances.csv. A malformed dataset prints one
message naming file, line and field on stderr, writes nothing and exits 2.

Standard library only. Money is Python int minor units; amounts are parsed from their text
(never through float). Written to follow DOMAIN.md sentence by sentence, not to be fast; each
rule carries the DOMAIN.md text it implements.

AMBIGUITIES: where DOMAIN.md leaves room, this file takes the most literal reading below
(the same list is in README.md; numbers are referenced as [A<n>] in the code).

 [A1]  Traffic `currency`: a value that is not one of CNY/HKD/JPY/USD (e.g. `EUR`, `cny`) is a
       FILE ERROR ("currency is not exactly one of the listed words"); an empty currency, or a
       listed currency that is not the account's, is a decline ("an empty or foreign currency
       ... is a decline").
 [A2]  "trailing zeros do not count" is applied to accounts.csv amounts too: `12.340` is a valid
       CNY balance/limit, `12.345` is a file error.
 [A3]  accounts.csv amounts (balance, per_txn_limit, daily_limit) must fit an i64 in minor units,
       else file error ("does not fit"). Traffic amounts have no length limit: any text matching
       `-?[0-9]+(\.[0-9]+)?` parses and a huge one is declined 13. (A Rust reader built on
       rust_decimal, which holds ~28 digits, must not turn a 30-digit amount into a file error.)
 [A4]  Extra columns are ignored completely: not checked for spaces, not compared for duplicates.
       Header names match exactly (case-sensitive, no trimming). A required column named twice
       in a header is a file error. A data row whose field count differs from the header's is
       a file error.
 [A5]  A blank line is a line with nothing before its line ending (CRLF or LF). A line of only
       spaces is not blank (it is a row with a bad field). Blank lines before the header are
       skipped as well. Line numbers in messages are 1-based physical lines, counting blank
       lines and the header.
 [A6]  "surrounding spaces": any field of a required column whose first or last character is
       whitespace (Python str.strip()) is a file error, including traffic `token`.
 [A7]  tokens.csv `expiry` must be exactly four ASCII digits YYMM with MM in 01..12, else file
       error. A token is expired for a request iff ts_ns >= 00:00 China time on the 1st of the
       month after YYMM (= 16:00 UTC on the last day of YYMM). YY=99, MM=12 ends at 2100-01-01.
 [A8]  A traffic field that the kind does not use may be non-empty (the duplicate rule compares
       such columns); it is ignored, but it must still parse as its column's type (an `mcc` of
       `abc` on a `void` is a file error). In traffic, empty is never a file error for token,
       account_id, amount, currency, mcc, ref, final; empty ts_ns/request_id/kind is.
 [A9]  Traffic `token` is free text (after the space rule): `abc` or a 12-digit string is simply
       a token that names nothing -> 14. Only tokens.csv applies the DPAN grammar.
 [A10] Ids (account_id, request_id, ref, mcc) and counts are `[0-9]+` (leading zeros allowed,
       `007` == 7, no sign); amounts/ids compare as numbers in the duplicate rule, so `12.340`
       == `12.34` and `-0` == `0` == `0.00`, but empty != `0` (only `final` empty == `0`).
       outcomes.csv writes request_id as its canonical integer (`007` -> `7`).
 [A11] Duplicate comparison covers kind, token, account_id, amount, currency, mcc, ref, final
       (request_id is equal by the key); extra columns are not compared. For card kinds the
       account in the key is the token's account; the account_id column is then only compared,
       never checked against the token's account.
 [A12] Expiry before each request is applied when the request reaches an account (after 14/78
       resolution). Its effects do not depend on when it runs (the hold's `ended` is its
       `expires_at`), so this is unobservable.
 [A13] An open hold is always referable (it has no `ended`).
 [A14] A capture of an expired hold (final or not) leaves it expired, and its `ended` stays its
       `expires_at`. Refund checks no hold state: open, closed or expired holds all refund while
       referable.
 [A15] With no traffic rows there is no "last ts_ns", so the final expiry is not applied.
 [A16] The 12/25 rule: `12` iff a duplicate record under (account, ref) exists, the current
       ts_ns < record ts_ns + window, the record's kind is `authorize` and its code is not `00`
       (any decline incl. 94; 14/78 are never recorded). Otherwise `25` (incl. empty ref).
 [A17] Day counters are per account per China day (floor((ts_ns + 8h) / 24h)). A void gives the
       day amount back iff the void's China day equals the China day of the hold's authorize;
       it then reduces that (current) day's amount. Increments count on their own day.
 [A18] A limit value < 0 is a file error; `-0` is 0, not negative. A negative balance is allowed.
 [A19] account_id duplicates in accounts.csv compare numerically; tokens.csv tokens as strings.
 [A20] account_close deactivates every token of the account whatever its status (suspended too).
 [A21] Admin kinds never look at amount/currency. Token admin: a deactivated token answers 14
       (resolution) before the closed-account 12.
 [A22] Balances are not bounded during the replay (Python ints); an engine on i64 could overflow
       only after ~10^7 maximal credits, not reachable with edgegen.
 [A23] CSV quoting (RFC 4180 double quotes) is accepted; the unquoted text is the field.
 [A24] Config: --ttl-ns and --window-ns must be > 0, --retention-ns >= 0 (as engine Config).
 [A25] On a file error OUT_DIR is not created; on success it is created if missing.
 [A26] The `94` "names a hold ... still referable" rule is for `authorize` only; another kind
       whose request_id equals a referable hold's is decided normally. A new approved authorize
       under a key whose old hold is no longer referable replaces it (the old one is closed or
       expired, so `held` loses nothing).
 [A27] An empty `ref` has no record, so it always answers 25 (the "12/25" in DOMAIN.md's
       settled details can only be 25 for it).
 [A28] tokens.csv `account_id` matches accounts.csv numerically (`001` names account 1).
 [A29] Header-only files are valid (no tokens, no accounts, no traffic).
"""

import argparse
import csv
import datetime
import heapq
import io
import os
import re
import sys

NS_PER_SEC = 1_000_000_000
NS_PER_HOUR = 3600 * NS_PER_SEC
NS_PER_DAY = 86_400 * NS_PER_SEC
# "China time is UTC+8"
CHINA_OFFSET_NS = 8 * NS_PER_HOUR

U64_MAX = (1 << 64) - 1
I64_MAX = (1 << 63) - 1

# "CNY has 2 decimals; also accept HKD 2, JPY 0, USD 2"
CURRENCY_DECIMALS = {"CNY": 2, "HKD": 2, "JPY": 0, "USD": 2}
ACCOUNT_STATUSES = ("active", "frozen", "closed")
TOKEN_STATUSES = ("active", "suspended", "deactivated")
KINDS = (
    "authorize", "increment", "capture", "void", "refund", "credit",
    "token_suspend", "token_resume", "token_deactivate",
    "account_freeze", "account_unfreeze", "account_close",
)
# "Card messages carry `token`; `credit` and account admin carry `account_id`."
TOKEN_KINDS = frozenset((
    "authorize", "increment", "capture", "void", "refund",
    "token_suspend", "token_resume", "token_deactivate",
))
ACCOUNT_KINDS = frozenset(("credit", "account_freeze", "account_unfreeze", "account_close"))
# "a `deactivated` one [answers 14] for `authorize`, `increment` and the token admin kinds"
DEACTIVATED_REFUSED = frozenset((
    "authorize", "increment", "token_suspend", "token_resume", "token_deactivate",
))

# "the largest allowed is 1,000,000,000 major units"
AMOUNT_MAJOR_MAX = 1_000_000_000

ACCOUNTS_COLS = ("account_id", "currency", "balance", "status",
                 "per_txn_limit", "daily_limit", "daily_count_limit")
TOKENS_COLS = ("token", "account_id", "status", "expiry")
TRAFFIC_COLS = ("ts_ns", "request_id", "kind", "token", "account_id",
                "amount", "currency", "mcc", "ref", "final")

# "Amounts match `-?[0-9]+(\.[0-9]+)?`"
AMOUNT_RE = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")
# "ids, mcc, `ts_ns` and counts are unsigned decimal integers" [A10]
UINT_RE = re.compile(r"[0-9]+")
# "DPAN: 13 to 19 ASCII digits, first digit not 0"
TOKEN_RE = re.compile(r"[1-9][0-9]{12,18}")
EXPIRY_RE = re.compile(r"[0-9]{2}(0[1-9]|1[0-2])")  # [A7]


class FileError(Exception):
    def __init__(self, file, line, field, msg):
        super().__init__(f"{file}: line {line}: field `{field}`: {msg}")


# ---------------------------------------------------------------------------------------------
# Amount text. Kept as (negative, integer digits, fraction digits) with leading zeros of the
# integer part and trailing zeros of the fraction stripped, so "trailing zeros do not count:
# `12.340` is `12.34`" falls out, and no huge text is ever turned into an int.
# ---------------------------------------------------------------------------------------------
class Amount:
    __slots__ = ("neg", "ip", "fp")

    def __init__(self, neg, ip, fp):
        self.neg, self.ip, self.fp = neg, ip, fp

    @property
    def is_zero(self):
        return self.ip == "" and self.fp == ""

    @property
    def positive(self):
        return not self.neg and not self.is_zero

    @property
    def decimals(self):
        return len(self.fp)

    def canon(self):
        """Numeric identity: '12.340' == '12.34', '-0' == '0'. [A10]"""
        return ("-" if self.neg else "") + (self.ip or "0") + ("." + self.fp if self.fp else "")

    def minor(self, dec):
        """Exact minor units; caller guarantees decimals <= dec and a sane length."""
        assert self.decimals <= dec
        v = int(self.ip or "0") * 10 ** dec + int((self.fp.ljust(dec, "0")) or "0")
        return -v if self.neg else v


def parse_amount_text(s):
    m = AMOUNT_RE.fullmatch(s)
    if not m:
        return None
    ip = m.group(2).lstrip("0")
    fp = (m.group(3) or "").rstrip("0")
    neg = m.group(1) == "-" and not (ip == "" and fp == "")
    return Amount(neg, ip, fp)


def format_minor(v, dec):
    """"amounts as decimals with the currency's number of decimals" """
    sign = "-" if v < 0 else ""
    q, r = divmod(abs(v), 10 ** dec)
    return f"{sign}{q}.{r:0{dec}d}" if dec else f"{sign}{q}"


def parse_uint(s, maxv):
    """None when it does not parse or does not fit."""
    if not UINT_RE.fullmatch(s):
        return None
    t = s.lstrip("0")
    if len(t) > 20:
        return None
    v = int(t or "0")
    return v if v <= maxv else None


# ---------------------------------------------------------------------------------------------
# CSV reading: "UTF-8, headers required, columns in any order, extra columns ignored, ... CRLF
# accepted"; "A UTF-8 byte-order mark is ignored, and blank lines are skipped (they take no seq)".
# ---------------------------------------------------------------------------------------------
def read_table(dir_, name, cols):
    """Returns a list of (line_no, {col: text}) for data rows, after the generic checks."""
    path = os.path.join(dir_, name)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise FileError(name, 0, "-", f"cannot read: {e.strerror}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise FileError(name, line, "-", "not valid UTF-8")
    if text.startswith("\ufeff"):
        text = text[1:]
    csv.field_size_limit(1 << 30)  # no length limit of our own on a field
    reader = csv.reader(io.StringIO(text, newline=""))
    header = None
    index = {}
    rows = []
    prev_line = 0
    try:
        for row in reader:
            line = prev_line + 1  # a record's first physical line [A5]
            prev_line = reader.line_num
            if not row:  # blank line [A5]
                continue
            if header is None:
                header = row
                for c in cols:
                    n = header.count(c)
                    if n == 0:
                        # "a column is missing"
                        raise FileError(name, line, c, "column is missing from the header")
                    if n > 1:  # [A4]
                        raise FileError(name, line, c, "column appears twice in the header")
                    index[c] = header.index(c)
                continue
            if len(row) != len(header):  # [A4]
                if len(row) < len(header):
                    missing = [c for c in cols if index[c] >= len(row)]
                    field = missing[0] if missing else header[len(row)]
                    raise FileError(name, line, field,
                                    f"row has {len(row)} fields, header has {len(header)}")
                raise FileError(name, line, "-",
                                f"row has {len(row)} fields, header has {len(header)}")
            rec = {}
            for c in cols:
                v = row[index[c]]
                # "a field has surrounding spaces" [A6]
                if v != v.strip():
                    raise FileError(name, line, c, f"surrounding spaces in {v!r}")
                rec[c] = v
            rows.append((line, rec))
    except csv.Error as e:
        raise FileError(name, reader.line_num, "-", f"CSV syntax: {e}")
    if header is None:
        # "headers required"
        raise FileError(name, 1, cols[0], "header is missing (file is empty)")
    return rows


# ---------------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------------
class Account:
    __slots__ = ("id", "currency", "dec", "balance", "held", "status", "per_txn_limit",
                 "daily_limit", "daily_count_limit", "day", "day_amount", "day_count",
                 "expiry_heap", "tokens")

    def __init__(self):
        self.held = 0
        self.day = None
        self.day_amount = 0
        self.day_count = 0
        self.expiry_heap = []
        self.tokens = []


class Token:
    __slots__ = ("token", "account_id", "status", "end_ns")


class Hold:
    __slots__ = ("account_id", "request_id", "authorized", "captured", "voided", "refunded",
                 "expires_at", "state", "ended", "day")

    def remaining(self):
        # "its remaining amount (`authorized - captured - voided`)"
        return self.authorized - self.captured - self.voided


class Record:
    __slots__ = ("ts", "fields", "kind", "code")

    def __init__(self, ts, fields, kind, code):
        self.ts, self.fields, self.kind, self.code = ts, fields, kind, code


class Req:
    __slots__ = ("ts", "request_id", "kind", "token", "account_id", "amount", "currency",
                 "mcc", "ref", "final", "fields")


def china_day(ts_ns):
    # "China time is UTC+8; a "day" is a China-time calendar day."
    return (ts_ns + CHINA_OFFSET_NS) // NS_PER_DAY


def token_end_ns(yymm):
    """First ns at which a token of expiry YYMM is expired. [A7]
    "expiry (`YYMM`, year 20YY; valid through the last day of that month, China time)"."""
    y = 2000 + int(yymm[:2])
    m = int(yymm[2:])
    y2, m2 = (y + 1, 1) if m == 12 else (y, m + 1)
    days = (datetime.date(y2, m2, 1) - datetime.date(1970, 1, 1)).days
    return days * NS_PER_DAY - CHINA_OFFSET_NS


# ---------------------------------------------------------------------------------------------
# Loading and validation: "The whole dataset is validated before any request is applied."
# ---------------------------------------------------------------------------------------------
def load_accounts(dir_):
    name = "accounts.csv"
    accounts = {}
    for line, r in read_table(dir_, name, ACCOUNTS_COLS):
        a = Account()
        a.id = parse_uint(r["account_id"], U64_MAX)
        if a.id is None:
            raise FileError(name, line, "account_id", f"not a u64: {r['account_id']!r}")
        # "an `account_id` or token appears twice" [A19]
        if a.id in accounts:
            raise FileError(name, line, "account_id", f"account {a.id} appears twice")
        # "`currency` is not exactly one of the listed words"
        if r["currency"] not in CURRENCY_DECIMALS:
            raise FileError(name, line, "currency", f"unknown currency {r['currency']!r}")
        a.currency = r["currency"]
        a.dec = CURRENCY_DECIMALS[a.currency]
        a.balance = account_amount(name, line, "balance", r["balance"], a.dec, False)
        # "`status` is not exactly one of the listed words"
        if r["status"] not in ACCOUNT_STATUSES:
            raise FileError(name, line, "status", f"unknown status {r['status']!r}")
        a.status = r["status"]
        # "(empty limit = none)"
        a.per_txn_limit = account_amount(name, line, "per_txn_limit", r["per_txn_limit"],
                                         a.dec, True)
        a.daily_limit = account_amount(name, line, "daily_limit", r["daily_limit"], a.dec, True)
        if r["daily_count_limit"] == "":
            a.daily_count_limit = None
        else:
            # "counts are unsigned decimal integers that fit in u64"
            a.daily_count_limit = parse_uint(r["daily_count_limit"], U64_MAX)
            if a.daily_count_limit is None:
                raise FileError(name, line, "daily_count_limit",
                                f"not a u64: {r['daily_count_limit']!r}")
        accounts[a.id] = a
    return accounts


def account_amount(name, line, field, text, dec, is_limit):
    if is_limit and text == "":
        return None
    a = parse_amount_text(text)
    if a is None:
        # "a number does not parse"
        raise FileError(name, line, field, f"not an amount: {text!r}")
    # "an amount in accounts.csv with more decimals than its currency allows is a file error" [A2]
    if a.decimals > dec:
        raise FileError(name, line, field, f"{text!r} has more than {dec} decimals")
    # [A3]
    if len(a.ip) > 25 or not (-I64_MAX - 1 <= a.minor(dec) <= I64_MAX):
        raise FileError(name, line, field, f"{text!r} does not fit i64 minor units")
    v = a.minor(dec)
    # "a limit is negative (a balance may be negative)" [A18]
    if is_limit and v < 0:
        raise FileError(name, line, field, f"limit {text!r} is negative")
    return v


def load_tokens(dir_, accounts):
    name = "tokens.csv"
    tokens = {}
    for line, r in read_table(dir_, name, TOKENS_COLS):
        t = Token()
        # "a tokens.csv token breaks the token grammar"
        if not TOKEN_RE.fullmatch(r["token"]):
            raise FileError(name, line, "token", f"not a DPAN (13-19 digits, no leading 0): "
                                                 f"{r['token']!r}")
        t.token = r["token"]
        # "an `account_id` or token appears twice" ("tokens compare digit for digit")
        if t.token in tokens:
            raise FileError(name, line, "token", f"token {t.token} appears twice")
        t.account_id = parse_uint(r["account_id"], U64_MAX)
        if t.account_id is None:
            raise FileError(name, line, "account_id", f"not a u64: {r['account_id']!r}")
        # "or names an account missing from accounts.csv"
        if t.account_id not in accounts:
            raise FileError(name, line, "account_id",
                            f"account {t.account_id} is not in accounts.csv")
        if r["status"] not in TOKEN_STATUSES:
            raise FileError(name, line, "status", f"unknown status {r['status']!r}")
        t.status = r["status"]
        if not EXPIRY_RE.fullmatch(r["expiry"]):  # [A7]
            raise FileError(name, line, "expiry", f"not YYMM: {r['expiry']!r}")
        t.end_ns = token_end_ns(r["expiry"])
        tokens[t.token] = t
        accounts[t.account_id].tokens.append(t)
    return tokens


def load_traffic(dir_):
    name = "traffic.csv"
    reqs = []
    prev_ts = None
    for line, r in read_table(dir_, name, TRAFFIC_COLS):
        q = parse_traffic_row(name, line, r)
        # "a traffic row's `ts_ns` is below the previous row's"
        if prev_ts is not None and q.ts < prev_ts:
            raise FileError(name, line, "ts_ns", f"{q.ts} is below the previous row's {prev_ts}")
        prev_ts = q.ts
        reqs.append(q)
    return reqs


def parse_traffic_row(name, line, r):
    """One traffic row ({column: text}) -> Req, or FileError."""
    q = Req()
    # "`ts_ns` in i64"
    q.ts = parse_uint(r["ts_ns"], I64_MAX)
    if q.ts is None:
        raise FileError(name, line, "ts_ns", f"not a non-negative i64: {r['ts_ns']!r}")
    q.request_id = parse_uint(r["request_id"], U64_MAX)
    if q.request_id is None:
        raise FileError(name, line, "request_id", f"not a u64: {r['request_id']!r}")
    if r["kind"] not in KINDS:
        raise FileError(name, line, "kind", f"unknown kind {r['kind']!r}")
    q.kind = r["kind"]
    q.token = r["token"]  # free text [A9]
    q.account_id = opt_uint(name, line, "account_id", r["account_id"])
    if r["amount"] == "":
        q.amount = None
    else:
        q.amount = parse_amount_text(r["amount"])
        if q.amount is None:
            raise FileError(name, line, "amount", f"not an amount: {r['amount']!r}")
    # [A1]
    if r["currency"] != "" and r["currency"] not in CURRENCY_DECIMALS:
        raise FileError(name, line, "currency", f"unknown currency {r['currency']!r}")
    q.currency = r["currency"]
    q.mcc = opt_uint(name, line, "mcc", r["mcc"])
    q.ref = opt_uint(name, line, "ref", r["ref"])
    # "`final` is not empty, `0` or `1`"
    if r["final"] not in ("", "0", "1"):
        raise FileError(name, line, "final", f"not empty, 0 or 1: {r['final']!r}")
    # "an empty `final` is `0`"
    q.final = r["final"] == "1"
    # "every field but `ts_ns` is equal (amounts, ids and mcc compare as numbers; an empty
    # `final` is `0`)"; "empty equals empty" [A10][A11]
    q.fields = (q.kind, q.token, q.account_id,
                None if q.amount is None else q.amount.canon(),
                q.currency, q.mcc, q.ref, q.final)
    return q


def opt_uint(name, line, field, text):
    if text == "":
        return None
    v = parse_uint(text, U64_MAX)
    if v is None:
        raise FileError(name, line, field, f"not a u64: {text!r}")
    return v


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------
class Engine:
    def __init__(self, accounts, tokens, ttl_ns, window_ns, retention_ns):
        self.accounts = accounts
        self.tokens = tokens
        self.ttl = ttl_ns
        self.window = window_ns
        self.retention = retention_ns
        self.holds = {}    # (account_id, request_id) -> Hold
        self.records = {}  # (account_id, request_id) -> Record
        self.heap_seq = 0

    # "Before a request is applied to an account, every open hold of that account with
    # `expires_at <= ts_ns` expires: its remaining amount (`authorized - captured - voided`)
    # leaves `held`, and it becomes `expired`."
    def expire(self, acct, ts):
        heap = acct.expiry_heap
        while heap and heap[0][0] <= ts:
            exp, _, h = heapq.heappop(heap)
            if h.state == "open" and h.expires_at == exp:  # else a stale entry
                acct.held -= h.remaining()
                h.state = "expired"
                # "`ended` is ... its `expires_at` if it expired"
                h.ended = h.expires_at
                assert acct.held >= 0

    def schedule(self, acct, h):
        self.heap_seq += 1
        heapq.heappush(acct.expiry_heap, (h.expires_at, self.heap_seq, h))

    def referable_hold(self, acct, request_id, ts):
        """"A hold stays referable while `ts_ns < ended + retention`" [A13]"""
        if request_id is None:
            return None
        h = self.holds.get((acct.id, request_id))
        if h is None:
            return None
        if h.state == "open" or ts < h.ended + self.retention:
            return h
        return None  # "after that a reference finds no hold"

    def no_hold_code(self, acct, q):
        """"no referable hold under `ref`: `12` when `ref`'s duplicate record (still inside its
        window) is a declined `authorize`, else `25`" [A16]"""
        if q.ref is not None:
            rec = self.records.get((acct.id, q.ref))
            if (rec is not None and q.ts < rec.ts + self.window
                    and rec.kind == "authorize" and rec.code != "00"):
                return "12"
        return "25"

    def amount_bad(self, acct, q):
        """"`13` amount missing or not positive, more decimals than the currency has (trailing
        zeros do not count: `12.340` is `12.34`), over 1,000,000,000 units, or currency not the
        account's". Returns True when 13 applies."""
        return self.amount_invalid(acct, q.amount) or q.currency != acct.currency

    def amount_invalid(self, acct, a):
        if a is None or not a.positive:
            return True
        if a.decimals > acct.dec:
            return True
        if len(a.ip) > 10:  # more than 10 integer digits is surely over 1e9
            return True
        return a.minor(acct.dec) > AMOUNT_MAJOR_MAX * 10 ** acct.dec

    def day_roll(self, acct, ts):
        d = china_day(ts)
        if acct.day != d:
            acct.day, acct.day_amount, acct.day_count = d, 0, 0

    def token_expired(self, tok, ts):
        return ts >= tok.end_ns  # [A7]

    # ---- one request -------------------------------------------------------------------------
    def apply(self, q):
        # "Resolve first: a `token` that is unknown answers `14`, and so does a `deactivated` one
        # for `authorize`, `increment` and the token admin kinds (`capture`, `void` and `refund`
        # still resolve it ...). An unknown `account_id` answers `78`. These answers are not
        # remembered for duplicates."
        tok = None
        if q.kind in TOKEN_KINDS:
            # "An empty `token` answers `14`"
            tok = self.tokens.get(q.token)
            if tok is None:
                return "14"
            if tok.status == "deactivated" and q.kind in DEACTIVATED_REFUSED:
                return "14"
            acct = self.accounts[tok.account_id]
        else:
            # "an empty `account_id` `78`"
            acct = self.accounts.get(q.account_id) if q.account_id is not None else None
            if acct is None:
                return "78"

        self.expire(acct, q.ts)  # [A12]

        # "Duplicates: the key is (account, `request_id`). ... A later request with the same key
        # and `ts_ns < record + window` answers exactly as the recorded one did and changes
        # nothing, when every field but `ts_ns` is equal ...; otherwise it answers `94` and
        # changes nothing. Neither kind of repeat makes a new record or extends the window.
        # From `record + window` on, the key is new again and its next request makes a new
        # record."
        key = (acct.id, q.request_id)
        rec = self.records.get(key)
        if rec is not None and q.ts < rec.ts + self.window:
            return rec.code if rec.fields == q.fields else "94"

        code = getattr(self, "k_" + q.kind)(acct, tok, q)
        # "The request that is decided under a key makes its record; the window runs from that
        # request's `ts_ns`." "Declines change nothing except the duplicate record."
        self.records[key] = Record(q.ts, q.fields, q.kind, code)
        assert acct.held >= 0
        return code

    # "`62` token suspended · `54` token expired · `78` account closed · `62` account frozen"
    def status_code(self, acct, tok, ts):
        if tok.status == "suspended":
            return "62"
        if self.token_expired(tok, ts):
            return "54"
        if acct.status == "closed":
            return "78"
        if acct.status == "frozen":
            return "62"
        return None

    def k_authorize(self, acct, tok, q):
        # "`94` its `request_id` names a hold of this account that is still referable"
        if self.referable_hold(acct, q.request_id, q.ts) is not None:
            return "94"
        # "`13` amount missing or not positive, ... or currency not the account's"
        if self.amount_bad(acct, q):
            return "13"
        c = self.status_code(acct, tok, q.ts)
        if c:
            return c
        amt = q.amount.minor(acct.dec)
        # "Limits are strict: "over" means greater than; equal passes."
        # "`61` amount over `per_txn_limit`"
        if acct.per_txn_limit is not None and amt > acct.per_txn_limit:
            return "61"
        self.day_roll(acct, q.ts)
        # "`61` day amount + amount over `daily_limit`"
        if acct.daily_limit is not None and acct.day_amount + amt > acct.daily_limit:
            return "61"
        # "`65` day count + 1 over `daily_count_limit`"
        if acct.daily_count_limit is not None and acct.day_count + 1 > acct.daily_count_limit:
            return "65"
        # "`51` amount over `available`"
        if amt > acct.balance - acct.held:
            return "51"
        # "`held += amount`; new open hold, `expires_at = ts + ttl`; day counters += amount, += 1"
        # "Hold: created by an approved `authorize`, keyed by (account, that request's
        # `request_id`)" -- replaces a hold of that key that is no longer referable.
        h = Hold()
        h.account_id, h.request_id = acct.id, q.request_id
        h.authorized, h.captured, h.voided, h.refunded = amt, 0, 0, 0
        h.expires_at = q.ts + self.ttl
        h.state, h.ended = "open", None
        # "and the China-time day of the authorization"
        h.day = china_day(q.ts)
        self.holds[(acct.id, q.request_id)] = h
        self.schedule(acct, h)
        acct.held += amt
        acct.day_amount += amt
        acct.day_count += 1
        return "00"

    def k_increment(self, acct, tok, q):
        # "`13` (as above)"
        if self.amount_bad(acct, q):
            return "13"
        # "no referable hold under `ref`: `12` ... else `25`"
        h = self.referable_hold(acct, q.ref, q.ts)
        if h is None:
            return self.no_hold_code(acct, q)
        # "`22` hold not open (closed or expired)"
        if h.state != "open":
            return "22"
        # "`62` · `54` · `78` · `62` (token, expiry, account, as above)"
        c = self.status_code(acct, tok, q.ts)
        if c:
            return c
        amt = q.amount.minor(acct.dec)
        # "`61` new `authorized` over `per_txn_limit`"
        if acct.per_txn_limit is not None and h.authorized + amt > acct.per_txn_limit:
            return "61"
        self.day_roll(acct, q.ts)
        # "`61` day amount + amount over `daily_limit`"
        if acct.daily_limit is not None and acct.day_amount + amt > acct.daily_limit:
            return "61"
        # "`51` amount over `available`"
        if amt > acct.balance - acct.held:
            return "51"
        # "hold `authorized += amount`, `held += amount`, `expires_at = ts + ttl`; day amount +=
        # amount" "(the day count does not change)" "An increment counts against the day it
        # happens on."
        h.authorized += amt
        acct.held += amt
        h.expires_at = q.ts + self.ttl
        self.schedule(acct, h)
        acct.day_amount += amt
        return "00"

    def k_capture(self, acct, tok, q):
        # "`13` (as above)"
        if self.amount_bad(acct, q):
            return "13"
        # "`12`/`25` (as for `increment`)"
        h = self.referable_hold(acct, q.ref, q.ts)
        if h is None:
            return self.no_hold_code(acct, q)
        # "`22` hold closed"
        if h.state == "closed":
            return "22"
        amt = q.amount.minor(acct.dec)
        # "`13` amount over `authorized - captured - voided`"
        if amt > h.remaining():
            return "13"
        # "`balance -= amount`, `captured += amount`"
        acct.balance -= amt
        h.captured += amt
        if h.state == "open":
            # "open hold: `held -= amount`, and if `final` or nothing remains, the remainder
            # leaves `held` and the hold closes"
            acct.held -= amt
            if q.final or h.remaining() == 0:
                acct.held -= h.remaining()
                h.state = "closed"
                # "`ended` is the `ts_ns` of the request that closed it"
                h.ended = q.ts
            # "A final capture's released remainder does not change the day amount."
        # else expired: "the amount comes off `balance` only, and the hold stays `expired`" [A14]
        return "00"

    def k_void(self, acct, tok, q):
        # "`13` amount given and invalid as above, or currency given and not the account's"
        if q.amount is not None and self.amount_invalid(acct, q.amount):
            return "13"
        if q.currency != "" and q.currency != acct.currency:
            return "13"
        # "`12`/`25`"
        h = self.referable_hold(acct, q.ref, q.ts)
        if h is None:
            return self.no_hold_code(acct, q)
        # "`22` hold not open"
        if h.state != "open":
            return "22"
        # "amount (empty = all remaining)"
        amt = h.remaining() if q.amount is None else q.amount.minor(acct.dec)
        # "`13` amount over what remains"
        if amt > h.remaining():
            return "13"
        # "`held -= amount`, `voided += amount`; closes when nothing remains"
        acct.held -= amt
        h.voided += amt
        if h.remaining() == 0:
            h.state = "closed"
            h.ended = q.ts
        # "same day as the authorization: day amount -= amount" "A void gives the day amount
        # back only on the authorization's own China day." [A17]
        if china_day(q.ts) == h.day:
            self.day_roll(acct, q.ts)
            acct.day_amount -= amt
            assert acct.day_amount >= 0
        return "00"

    def k_refund(self, acct, tok, q):
        # "`13` (as above)"
        if self.amount_bad(acct, q):
            return "13"
        # "`12`/`25`"
        h = self.referable_hold(acct, q.ref, q.ts)
        if h is None:
            return self.no_hold_code(acct, q)
        amt = q.amount.minor(acct.dec)
        # "`13` amount over `captured - refunded`"
        if amt > h.captured - h.refunded:
            return "13"
        # "`balance += amount`, `refunded += amount`"
        acct.balance += amt
        h.refunded += amt
        return "00"

    def k_credit(self, acct, tok, q):
        # "`13` (as above)"
        if self.amount_bad(acct, q):
            return "13"
        # "`78` account closed" (frozen accounts take credits)
        if acct.status == "closed":
            return "78"
        # "`balance += amount`"
        acct.balance += q.amount.minor(acct.dec)
        return "00"

    # "Admin: `00`, or `12` where the change is not allowed: `token_suspend` of a token that is
    # not active, `token_resume` of one that is not suspended, `account_freeze` of an account
    # that is not active, `account_unfreeze` of one that is not frozen, anything on a closed
    # account." "Token admin on a closed account answers `12`; closing a frozen account is
    # allowed." [A21]
    def k_token_suspend(self, acct, tok, q):
        if acct.status == "closed" or tok.status != "active":
            return "12"
        tok.status = "suspended"
        return "00"

    def k_token_resume(self, acct, tok, q):
        if acct.status == "closed" or tok.status != "suspended":
            return "12"
        tok.status = "active"
        return "00"

    def k_token_deactivate(self, acct, tok, q):
        # reached only with an active or suspended token (deactivated answered 14)
        if acct.status == "closed":
            return "12"
        tok.status = "deactivated"
        return "00"

    def k_account_freeze(self, acct, tok, q):
        if acct.status != "active":
            return "12"
        acct.status = "frozen"
        return "00"

    def k_account_unfreeze(self, acct, tok, q):
        if acct.status != "frozen":
            return "12"
        acct.status = "active"
        return "00"

    def k_account_close(self, acct, tok, q):
        if acct.status == "closed":
            return "12"
        acct.status = "closed"
        # "An `account_close` request deactivates the account's tokens and leaves its holds as
        # they are (they still capture, void and expire)" [A20]
        for t in acct.tokens:
            t.status = "deactivated"
        return "00"


# ---------------------------------------------------------------------------------------------
def run(dataset, out_dir, ttl_ns, window_ns, retention_ns):
    accounts = load_accounts(dataset)
    tokens = load_tokens(dataset, accounts)
    reqs = load_traffic(dataset)

    eng = Engine(accounts, tokens, ttl_ns, window_ns, retention_ns)
    initial = {aid: a.balance for aid, a in accounts.items()}
    outcomes = []
    for seq, q in enumerate(reqs):
        acct = touched_account(eng, q)
        before = None if acct is None else acct.balance - acct.held
        late = acct is not None and q.kind == "capture" and is_late_capture(eng, acct, q)
        code = eng.apply(q)
        outcomes.append((seq, q.request_id, code))
        # "Only `capture` of an expired hold can drive `available` below zero (late clearing)."
        if acct is not None:
            after = acct.balance - acct.held
            assert not (after < 0 and after < before) or (late and code == "00"), seq

    # "Final state is reported as of the last `ts_ns` of the run, with the same expiry rule
    # applied." "a hold expiring exactly then is expired." [A15]
    if reqs:
        last = reqs[-1].ts
        for a in accounts.values():
            eng.expire(a, last)

    check_invariants(eng, reqs, outcomes, initial)

    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "outcomes.csv"), "w", newline="") as f:
        f.write("seq,request_id,code\n")
        f.write("".join(f"{s},{r},{c}\n" for s, r, c in outcomes))
    with open(os.path.join(out_dir, "balances.csv"), "w", newline="") as f:
        f.write("account_id,balance,held,available\n")
        for aid in sorted(accounts):
            a = accounts[aid]
            f.write(f"{aid},{format_minor(a.balance, a.dec)},{format_minor(a.held, a.dec)},"
                    f"{format_minor(a.balance - a.held, a.dec)}\n")


# ---------------------------------------------------------------------------------------------
# Self-checks of the oracle ("Invariants the tests must hold"). A failure is a bug here.
# ---------------------------------------------------------------------------------------------
def touched_account(eng, q):
    if q.kind in TOKEN_KINDS:
        t = eng.tokens.get(q.token)
        return None if t is None else eng.accounts[t.account_id]
    return eng.accounts.get(q.account_id)


def is_late_capture(eng, acct, q):
    h = eng.holds.get((acct.id, q.ref)) if q.ref is not None else None
    return h is not None and (h.state == "expired" or
                              (h.state == "open" and h.expires_at <= q.ts))


def check_invariants(eng, reqs, outcomes, initial):
    # "Money is conserved: final `balance` = initial `balance` + approved credits + approved
    # refunds - approved captures, per account." (exact repeats answer 00 but move nothing, so
    # only requests that made a record with 00 count: the first 00 under each record.)
    expect = dict(initial)
    seen = {}
    for q, (_, _, code) in zip(reqs, outcomes):
        if code != "00" or q.kind not in ("credit", "refund", "capture"):
            continue
        acct = touched_account(eng, q)
        key = (acct.id, q.request_id)
        rec_ts = seen.get(key)
        if rec_ts is not None and q.ts < rec_ts + eng.window:
            continue  # a repeat of a recorded 00
        seen[key] = q.ts
        amt = q.amount.minor(acct.dec)
        expect[acct.id] += -amt if q.kind == "capture" else amt
    # "`held` equals the sum of remaining amounts of open holds, and is never negative."
    held = {aid: 0 for aid in eng.accounts}
    for h in eng.holds.values():
        if h.state == "open":
            held[h.account_id] += h.remaining()
    for aid, a in eng.accounts.items():
        assert a.balance == expect[aid], f"money not conserved on account {aid}"
        assert a.held == held[aid] and a.held >= 0, f"held wrong on account {aid}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("dataset")
    p.add_argument("out_dir")
    p.add_argument("--ttl-ns", type=int, default=7 * NS_PER_DAY)
    p.add_argument("--window-ns", type=int, default=NS_PER_DAY)
    p.add_argument("--retention-ns", type=int, default=45 * NS_PER_DAY)
    args = p.parse_args(argv)
    if args.ttl_ns <= 0 or args.window_ns <= 0 or args.retention_ns < 0:  # [A24]
        print("payauth_ref: --ttl-ns and --window-ns must be > 0, --retention-ns >= 0",
              file=sys.stderr)
        return 2
    try:
        run(args.dataset, args.out_dir, args.ttl_ns, args.window_ns, args.retention_ns)
    except FileError as e:
        print(f"payauth_ref: malformed dataset: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
