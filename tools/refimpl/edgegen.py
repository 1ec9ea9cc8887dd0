#!/usr/bin/env python3
"""edgegen: a small, adversarial but VALID payauth dataset, deterministic per seed.

    python3 tools/refimpl/edgegen.py OUT_DIR --seed S [--accounts N] [--requests M]
        [--ttl-ns N --window-ns N --retention-ns N] [--plain] [--no-long-amounts]

Writes OUT_DIR/{accounts,tokens,traffic}.csv and OUT_DIR/GENERATED.txt (the full command).
Every file passes the DOMAIN.md "Files" rules (checked before exit with payauth_ref's reader);
everything else is aimed at the decision rules:

- few accounts (CNY/JPY/HKD/USD) with tight limits and small balances, some frozen or closed,
  ids small, zero-padded or near 2^63 / 2^64-1; 1-3 tokens each, active/suspended/deactivated,
  expiring at the month ends around the traffic (China time);
- request_ids from a small pool (key collisions, authorizations naming a referable hold) mixed
  with fresh ones; repeats of recent rows: exact, numerically equal but written differently
  (`12.340`, `007`, `final` empty vs `0`), or with one column changed (incl. unused columns);
- refs to open, expired and closed holds, to declined authorizations (12), to other kinds'
  request_ids, unknown and empty (25); amounts exactly the remaining / captured / available /
  per-txn / left-of-daily amount and one minor unit over, parts of them, 0, -0, negative, too
  many decimals, trailing and leading zeros, 1000000000, 1000000000.01, empty, and rarely
  30+ digits; currencies right, foreign-but-listed and empty;
- tokens unknown / empty / `abc` / zero-prefixed; account ids unknown / empty / zero-padded
  for credit and admin; all 12 kinds; `final` 0 / 1 / empty;
- time: bursts at the same ns and tiny steps, hours, and jumps landing exactly on (or 1 ns
  around) a hold's expires_at, a record's ts + window, a hold's ended + retention, a China
  midnight (16:00 UTC) or a token's month end;
- file form (unless --plain): shuffled column order, an extra column, BOM, CRLF, blank lines.

To aim at live holds the generator steps payauth_ref's engine as it writes rows; that only
steers the choices, the dataset itself is plain input. The ttl/window/retention options steer
the time jumps and the stepping: pass the values the replay will use.
"""

import argparse
import datetime
import os
import random
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import payauth_ref as ref  # noqa: E402

NS = 1_000_000_000
HOUR = 3600 * NS
DAY = 86_400 * NS
CHINA = 8 * HOUR
DEC = {"CNY": 2, "HKD": 2, "JPY": 0, "USD": 2}
KIND_WEIGHTS = [
    ("authorize", 27), ("capture", 15), ("void", 10), ("increment", 9), ("refund", 8),
    ("credit", 8), ("token_suspend", 3), ("token_resume", 3), ("token_deactivate", 0.5),
    ("account_freeze", 2), ("account_unfreeze", 2), ("account_close", 0.3),
]
KINDS = [k for k, _ in KIND_WEIGHTS]
CARD = {"authorize", "increment", "capture", "void", "refund",
        "token_suspend", "token_resume", "token_deactivate"}
ACCOUNTS_COLS = ["account_id", "currency", "balance", "status",
                 "per_txn_limit", "daily_limit", "daily_count_limit"]
TOKENS_COLS = ["token", "account_id", "status", "expiry"]
TRAFFIC_COLS = ["ts_ns", "request_id", "kind", "token", "account_id",
                "amount", "currency", "mcc", "ref", "final"]


def month_end_ns(y, m):
    """First ns after month (y, m) in China time: when a token of that expiry stops working."""
    y2, m2 = (y + 1, 1) if m == 12 else (y, m + 1)
    return (datetime.date(y2, m2, 1) - datetime.date(1970, 1, 1)).days * DAY - CHINA


def china_day(ts):
    return (ts + CHINA) // DAY


class Gen:
    def __init__(self, a):
        self.r = random.Random(a.seed)
        self.a = a
        self.ttl, self.window, self.retention = a.ttl_ns, a.window_ns, a.retention_ns

    # ---- amounts ---------------------------------------------------------------------------
    def money(self, minor, dec, trailing=False):
        s = "-" if minor < 0 else ""
        q, rem = divmod(abs(minor), 10 ** dec)
        t = f"{s}{q}.{rem:0{dec}d}" if dec else f"{s}{q}"
        if trailing:
            t += ("" if dec else ".") + "0" * self.r.randint(1, 2)
        return t

    def weird_amount(self, dec):
        r = self.r
        if not self.a.no_long_amounts and r.random() < 0.06:
            return "1" + "".join(r.choice("0123456789") for _ in range(r.randint(29, 34))) + ".5"
        return r.choice([
            "0", "0." + "0" * max(dec, 1), "-0", "-" + self.money(r.randint(1, 500), dec),
            self.money(r.randint(1, 999), dec) + "1" if dec else f"{r.randint(1, 99)}.5",
            "0" * r.randint(1, 3) + self.money(r.randint(1, 999), dec),
            "1000000000", "1000000000." + "0" * max(dec, 1), "1000000000.01", "999999999.99",
            "",
        ])

    def amount_near(self, target, dec):
        """`target` minor units exactly, one over, a part of it, or something odd."""
        r = self.r
        x = r.random()
        if target is not None and target > 0:
            if x < 0.35:
                return self.money(target, dec, trailing=r.random() < 0.15)
            if x < 0.50:
                return self.money(target + 1, dec)
            if x < 0.80:
                return self.money(r.randint(1, target), dec, trailing=r.random() < 0.1)
        if x < 0.90:
            return self.money(r.randint(1, 200 * 10 ** dec), dec)
        return self.weird_amount(dec)

    # ---- accounts and tokens -------------------------------------------------------------------
    def static_files(self):
        r = self.r
        n_acc = self.a.accounts or r.randint(5, 12)
        y, m = 2025, r.randint(1, 12)
        # Start on the last China day of a month, some hours before 16:00 UTC.
        self.start = month_end_ns(y, m) - r.randint(1, 30) * HOUR - r.randint(0, 3599) * NS
        months = [(y, m - 1) if m > 1 else (y - 1, 12), (y, m),
                  (y, m + 1) if m < 12 else (y + 1, 1)]
        ids = set()
        while len(ids) < n_acc:
            ids.add(r.choices([r.randint(1, 60), 2 ** 64 - 1 - r.randint(0, 3),
                               2 ** 63 + r.randint(0, 3)], [8, 1, 1])[0])
        acc_rows, tok_rows, seen = [], [], set()
        for aid in sorted(ids, key=lambda _: r.random()):
            cur = r.choice(list(DEC))
            dec = DEC[cur]
            bal = r.choices([0, r.randint(1, 50), r.randint(50, 400), r.randint(400, 3000),
                             -r.randint(1, 50)], [1, 2, 4, 4, 1])[0] * 10 ** dec \
                + r.randint(0, 10 ** dec - 1)
            per = None if r.random() < 0.4 else r.randint(20, 250) * 10 ** dec
            daily = None if r.random() < 0.4 else r.randint(40, 500) * 10 ** dec
            count = None if r.random() < 0.5 else r.randint(0, 5)
            acc_rows.append({
                "account_id": self.id_text(aid, 0.1),
                "currency": cur,
                "balance": self.money(bal, dec),
                "status": r.choices(["active", "frozen", "closed"], [80, 10, 10])[0],
                "per_txn_limit": "" if per is None else self.money(per, dec),
                "daily_limit": "" if daily is None else self.money(daily, dec),
                "daily_count_limit": "" if count is None else str(count),
            })
            for _ in range(r.choice([1, 1, 2, 2, 3])):
                while True:
                    t = str(r.randint(1, 9)) + "".join(
                        r.choice("0123456789") for _ in range(r.randint(12, 18)))
                    if t not in seen:
                        break
                seen.add(t)
                ym = r.choices(months + [(2099, 12), (2030, 6)], [1, 2, 2, 4, 2])[0]
                tok_rows.append({
                    "token": t, "account_id": self.id_text(aid, 0.1),
                    "status": r.choices(["active", "suspended", "deactivated"], [84, 9, 7])[0],
                    "expiry": f"{ym[0] % 100:02d}{ym[1]:02d}",
                })
        return acc_rows, tok_rows

    def id_text(self, v, p_pad):
        return ("0" * self.r.randint(1, 2) + str(v)) if self.r.random() < p_pad else str(v)

    # ---- traffic ---------------------------------------------------------------------------
    def traffic(self, accounts, tokens):
        r = self.r
        self.eng = ref.Engine(accounts, tokens, self.ttl, self.window, self.retention)
        self.accts = [accounts[k] for k in sorted(accounts)]
        self.auth_ok = {a.id: [] for a in self.accts}    # approved authorize rids
        self.auth_bad = {a.id: [] for a in self.accts}   # declined authorize rids
        self.other = {a.id: [] for a in self.accts}      # any other decided rids
        self.pool = list(range(1, max(8, (self.a.requests or 400) // 8) + 1))
        self.fresh = 1000
        self.long_spent = 0
        # Per-row odds of big time steps and of irreversible admin shrink with --requests so a
        # long dataset does not end with every token expired or deactivated.
        self.scale = min(1.0, 400 / max(1, self.a.requests))
        self.kind_weights = [w * (self.scale if k in ("token_deactivate", "account_close")
                                  else 1) for k, w in KIND_WEIGHTS]
        rows = []
        ts = self.start
        for i in range(self.a.requests):
            self.focus = None
            ts = self.advance(ts, rows)
            f = self.focus
            if f and f[0] == "repeat":      # landed on a record's ts + window: same key again
                row = self.repeat([f[1]])
            elif f and f[0] == "hold":      # landed on a hold's expiry / retention edge
                row = self.request(ts, kind=r.choice(["capture", "capture", "void", "increment",
                                                      "refund", "authorize"]),
                                   acct=f[1], ref_=f[2])
            elif f and f[0] == "token":     # landed on a token's month end
                row = self.request(ts, kind="authorize", acct=f[1], token=f[2])
            elif rows and r.random() < 0.14:
                row = self.repeat(rows)
            else:
                row = self.request(ts)
            row["ts_ns"] = str(ts)
            q = ref.parse_traffic_row("traffic.csv", i + 2, row)
            code = self.eng.apply(q)
            self.observe(row, q, code)
            rows.append(row)
        return rows

    def observe(self, row, q, code):
        if code in ("14", "78"):
            return
        if q.kind in CARD:
            aid = self.eng.tokens[q.token].account_id
        else:
            aid = q.account_id
        rid = q.request_id
        if q.kind == "authorize" and code == "00":
            self.auth_ok[aid].append(rid)
        elif q.kind == "authorize":
            self.auth_bad[aid].append(rid)
        else:
            self.other[aid].append(rid)
        for lst in (self.auth_ok[aid], self.auth_bad[aid], self.other[aid]):
            del lst[:-30]

    def new_rid(self):
        if self.r.random() < 0.4:
            return self.r.choice(self.pool)
        self.fresh += self.r.randint(1, 3)
        return self.fresh

    LONG_JUMP_BUDGET_NS = 80 * DAY

    def advance(self, ts, rows):
        """Steps of more than a day share a budget of 80 days, so that the traffic spans weeks
        (tokens do not all expire) whatever --requests is."""
        t = self.step(ts, rows)
        if t - ts > DAY:
            if self.long_spent + (t - ts) > self.LONG_JUMP_BUDGET_NS:
                self.focus = None
                return ts + self.r.randint(0, 10)
            self.long_spent += t - ts
        return t

    def step(self, ts, rows):
        """Mostly the same ns or tiny steps; sometimes hours; rarely a jump landing exactly on
        (or 1 ns around) an edge."""
        r = self.r
        x = r.random()
        if x < 0.36:
            return ts
        if x < 0.64:
            return ts + r.randint(1, 1000)
        if x < 0.82:
            return ts + r.randint(1, 120) * NS
        if r.random() > self.scale:  # long datasets: as many big steps as 400 rows would have
            return ts + r.randint(1, 1000)
        if x < 0.89:
            return ts + r.randint(1, 4) * HOUR + r.randint(0, 3599) * NS
        edge = r.choice([-1, 0, 0, 0, 1])
        # The edge jumps also set self.focus: the row written there then uses that edge.
        if x < 0.905:  # a hold's expires_at
            exp = sorted((h.expires_at, h.account_id, h.request_id)
                         for h in self.eng.holds.values()
                         if h.state == "open" and h.expires_at + edge >= ts)
            if exp:
                e, aid, rid = r.choice(exp[:5])
                self.focus = ("hold", self.eng.accounts[aid], rid)
                return e + edge
        elif x < 0.93 and rows:  # a record's ts + window
            row = r.choice(rows[-60:])
            t = int(row["ts_ns"]) + self.window + edge
            if t >= ts:
                self.focus = ("repeat", row)
                return t
        elif x < 0.935:  # a closed/expired hold's ended + retention (rare: up to 45 days)
            ends = sorted((h.ended + self.retention, h.account_id, h.request_id)
                          for h in self.eng.holds.values()
                          if h.state != "open" and h.ended + self.retention + edge >= ts)
            if ends:
                e, aid, rid = ends[0]
                self.focus = ("hold", self.eng.accounts[aid], rid)
                return e + edge
        elif x < 0.955:  # next China midnight = 16:00 UTC
            return ((ts + CHINA) // DAY + 1) * DAY - CHINA + edge
        elif x < 0.965:  # a token's month end, if one is near
            ahead = sorted((t.end_ns, t.token) for t in self.eng.tokens.values()
                           if ts <= t.end_ns + edge <= ts + 40 * DAY)
            if ahead:
                e, tok = ahead[0]
                self.focus = ("token", self.eng.accounts[self.eng.tokens[tok].account_id], tok)
                return e + edge
        return ts + r.randint(0, 10)

    def pick_account(self, ts=None):
        """Mostly an account with a token that can authorize, else any."""
        r = self.r
        if ts is not None and r.random() < 0.8:
            good = [a for a in self.accts if a.status == "active" and any(
                t.status == "active" and ts < t.end_ns for t in a.tokens)]
            if good:
                return r.choice(good)
        alive = [a for a in self.accts if a.status != "closed"]
        if alive and r.random() < 0.85:
            return r.choice(alive)
        return r.choice(self.accts)

    def pick_token(self, acct, ts):
        r = self.r
        usable = [t.token for t in acct.tokens
                  if t.status == "active" and ts < t.end_ns and acct.status == "active"]
        live = [t.token for t in acct.tokens if t.status != "deactivated"]
        x = r.random()
        if x < 0.80 and usable:
            return r.choice(usable)
        if x < 0.85 and live:
            return r.choice(live)
        if x < 0.94 and acct.tokens:
            return r.choice(acct.tokens).token
        if acct.tokens and r.random() < 0.3:
            return "0" + acct.tokens[0].token  # digit for digit: names nothing
        return r.choice(["", "abc", "123456789012", str(r.randint(10 ** 15, 10 ** 16 - 1))])

    def hold(self, acct, rid):
        return self.eng.holds.get((acct.id, rid))

    def pick_ref(self, acct, want):
        """want: a predicate on Hold. Mostly such a hold, else the odd refs."""
        r = self.r
        x = r.random()
        good = [rid for rid in self.auth_ok[acct.id]
                if self.hold(acct, rid) is not None and want(self.hold(acct, rid))]
        if x < 0.68 and good:
            return r.choice(good[-8:])
        if x < 0.78 and self.auth_ok[acct.id]:
            return r.choice(self.auth_ok[acct.id])
        if x < 0.86 and self.auth_bad[acct.id]:
            return r.choice(self.auth_bad[acct.id])
        if x < 0.90 and self.other[acct.id]:
            return r.choice(self.other[acct.id])
        if x < 0.95:
            return r.choice(self.pool)
        return None

    def currency(self, acct, p_empty=0.05, p_foreign=0.06):
        x = self.r.random()
        if x < p_empty:
            return ""
        if x < p_empty + p_foreign:
            return self.r.choice([c for c in DEC if c != acct.currency])
        return acct.currency

    def request(self, ts, kind=None, acct=None, ref_=None, token=None):
        """A fresh row; kind/acct/ref_/token force those choices (edge focus)."""
        r = self.r
        forced_ref = ref_
        kind = kind or r.choices(KINDS, self.kind_weights)[0]
        acct = acct or self.pick_account(ts)
        # admin that undoes a state: mostly aim it where it is allowed, so states come and go
        if kind == "token_resume" and r.random() < 0.7:
            sus = [a for a in self.accts if any(t.status == "suspended" for t in a.tokens)]
            acct = r.choice(sus) if sus else acct
        if kind == "account_unfreeze" and r.random() < 0.7:
            frozen = [a for a in self.accts if a.status == "frozen"]
            acct = r.choice(frozen) if frozen else acct
        dec = acct.dec
        row = dict.fromkeys(TRAFFIC_COLS, "")
        row["kind"] = kind
        row["request_id"] = str(self.new_rid())
        if kind == "authorize" and forced_ref is not None:
            row["request_id"] = str(forced_ref)  # names the hold: 94 while referable
        if kind in CARD:
            row["token"] = token or self.pick_token(acct, ts)
            sus = [t.token for t in acct.tokens if t.status == "suspended"]
            if kind == "token_resume" and sus and r.random() < 0.8:
                row["token"] = r.choice(sus)
            if r.random() < 0.03:
                row["account_id"] = str(acct.id)  # unused column, still compared
        else:
            x = r.random()
            if x < 0.88:
                row["account_id"] = self.id_text(acct.id, 0.1)
            elif x < 0.95:
                row["account_id"] = str(r.choice([0, 61, 999, 2 ** 64 - 1 - 7]))
            if r.random() < 0.03:
                row["token"] = self.pick_token(acct, ts)

        if kind == "authorize":
            avail = acct.balance - acct.held
            day_amt = acct.day_amount if acct.day == china_day(ts) else 0
            edges = [avail, acct.per_txn_limit,
                     None if acct.daily_limit is None else acct.daily_limit - day_amt]
            x = r.random()
            if x < 0.25:
                target = r.choice(edges)
            else:
                target = min([e for e in edges if e is not None and e > 0], default=None)
                if target is not None and r.random() < 0.7:
                    target = r.randint(1, target)
            row["amount"] = self.amount_near(target, dec)
            row["currency"] = self.currency(acct)
            row["mcc"] = r.choice(["5411", "5812", "4111", "0742", "5411", ""])
        elif kind in ("capture", "void", "increment", "refund"):
            if forced_ref is not None:
                ref_ = forced_ref
            elif kind == "refund":
                ref_ = self.pick_ref(acct, lambda h: h.captured > h.refunded)
            elif kind == "capture" and r.random() < 0.2:
                ref_ = self.pick_ref(acct, lambda h: h.state == "expired")
            else:
                ref_ = self.pick_ref(acct, lambda h: h.state == "open")
            row["ref"] = "" if ref_ is None else str(ref_)
            h = None if ref_ is None else self.hold(acct, ref_)
            if kind == "refund":
                target = None if h is None else h.captured - h.refunded
            elif kind == "increment":
                target = r.randint(1, 50 * 10 ** dec)
            else:
                target = None if h is None else h.remaining()
            row["amount"] = self.amount_near(target, dec)
            if kind == "void":
                if r.random() < 0.4:
                    row["amount"] = ""
                row["currency"] = self.currency(acct, p_empty=0.5, p_foreign=0.05)
            else:
                row["currency"] = self.currency(acct)
            if kind == "capture":
                row["final"] = r.choice(["", "0", "1", "1"])
        elif kind == "credit":
            row["amount"] = self.amount_near(r.randint(1, 300 * 10 ** dec), dec)
            row["currency"] = self.currency(acct)
        if kind != "capture" and r.random() < 0.03:
            row["final"] = r.choice(["0", "1"])   # unused column
        if kind != "authorize" and r.random() < 0.02:
            row["mcc"] = str(r.randint(1000, 9999))  # unused column
        return row

    def repeat(self, rows):
        """A recent row again: exact, equal as numbers, or with one column changed."""
        r = self.r
        row = dict(r.choice(rows[-20:]))
        x = r.random()
        if x < 0.45:
            return row
        if x < 0.70:
            f = r.choice(["amount", "mcc", "account_id", "final", "request_id", "ref"])
            v = row[f]
            if f == "amount" and v:
                row[f] = v + "0" if "." in v else v + ".0"
            elif f in ("mcc", "account_id", "request_id", "ref") and v:
                row[f] = "0" + v
            elif f == "final" and v in ("", "0"):
                row[f] = "0" if v == "" else ""
            return row
        f = r.choice(["amount", "currency", "mcc", "final", "account_id", "token", "ref", "kind"])
        if f == "amount":
            row[f] = r.choice(["", "1", "2.5", "0", row[f] + "1" if row[f] else "3"])
        elif f == "currency":
            row[f] = r.choice(["", "CNY", "JPY", "HKD", "USD"])
        elif f == "mcc":
            row[f] = r.choice(["", "5411", "5999"])
        elif f == "final":
            row[f] = r.choice(["", "0", "1"])
        elif f == "account_id":
            row[f] = r.choice(["", "1", str(self.pick_account().id)])
        elif f == "token":
            row[f] = self.pick_token(self.pick_account(), 0)
        elif f == "ref":
            row[f] = r.choice(["", str(r.choice(self.pool))])
        else:
            row[f] = r.choice(KINDS)
        return row


def write_csv(path, cols, rows, r, plain):
    cols = list(cols)
    extra = None
    bom = crlf = blanks = False
    if not plain:
        if r.random() < 0.4:
            r.shuffle(cols)
        if r.random() < 0.3:
            extra = r.choice(["note", "comment", "x_trace"])
            cols.insert(r.randint(0, len(cols)), extra)
        bom, crlf, blanks = r.random() < 0.25, r.random() < 0.3, r.random() < 0.3
    nl = "\r\n" if crlf else "\n"
    out = ["\ufeff" if bom else "", ",".join(cols) + nl]
    for row in rows:
        if blanks and r.random() < 0.05:
            out.append(nl)
        out.append(",".join((f"v{r.randint(0, 99)}" if c == extra else row[c]) for c in cols) + nl)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("".join(out))


def main(argv=None):
    p = argparse.ArgumentParser(description="adversarial but valid payauth dataset")
    p.add_argument("out_dir")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--accounts", type=int, default=0, help="default: 5..12 by seed")
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--ttl-ns", type=int, default=7 * DAY)
    p.add_argument("--window-ns", type=int, default=DAY)
    p.add_argument("--retention-ns", type=int, default=45 * DAY)
    p.add_argument("--plain", action="store_true",
                   help="canonical file form: header order, no extra column/BOM/CRLF/blank lines")
    p.add_argument("--no-long-amounts", action="store_true",
                   help="never write amounts of 30+ digits")
    a = p.parse_args(argv)
    if a.accounts < 0 or a.requests < 0:
        p.error("--accounts and --requests must not be negative")
    if a.ttl_ns <= 0 or a.window_ns <= 0 or a.retention_ns < 0:
        p.error("--ttl-ns and --window-ns must be > 0, --retention-ns >= 0")

    g = Gen(a)
    fr = random.Random(a.seed ^ 0x5EED)  # the file form has its own stream
    os.makedirs(a.out_dir, exist_ok=True)
    acc_rows, tok_rows = g.static_files()
    write_csv(os.path.join(a.out_dir, "accounts.csv"), ACCOUNTS_COLS, acc_rows, fr, a.plain)
    write_csv(os.path.join(a.out_dir, "tokens.csv"), TOKENS_COLS, tok_rows, fr, a.plain)
    try:
        accounts = ref.load_accounts(a.out_dir)
        tokens = ref.load_tokens(a.out_dir, accounts)
        rows = g.traffic(accounts, tokens)
        write_csv(os.path.join(a.out_dir, "traffic.csv"), TRAFFIC_COLS, rows, fr, a.plain)
        ref.load_traffic(a.out_dir)  # the whole dataset must pass the file rules
    except ref.FileError as e:
        print(f"edgegen: BUG, generated an invalid dataset: {e}", file=sys.stderr)
        return 3
    with open(os.path.join(a.out_dir, "GENERATED.txt"), "w") as f:
        f.write(f"python3 tools/refimpl/edgegen.py OUT_DIR --seed {a.seed} "
                f"--accounts {a.accounts} --requests {a.requests} --ttl-ns {a.ttl_ns} "
                f"--window-ns {a.window_ns} --retention-ns {a.retention_ns}"
                + (" --plain" if a.plain else "")
                + (" --no-long-amounts" if a.no_long_amounts else "") + "\n")
    print(f"edgegen: seed {a.seed}: {len(acc_rows)} accounts, {len(tok_rows)} tokens, "
          f"{len(rows)} requests -> {a.out_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
