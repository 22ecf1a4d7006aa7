#!/usr/bin/python3
"""Audience as a property (docs/PROTOCOL.md "audience", "seq", "queues"):
50 connections with random users (some anonymous), 10,000 random events with
random audiences through the real server over `POST /api/emit` batches. Every
event must reach exactly the subscribers of its scope that its audience
allows: zero deliveries outside an audience, zero missed inside it, each at
most once, in seq order, nothing dropped.

The rule checked (`allowed`): the connection subscribed to the event's scope,
and the event has no audience (absent or null), or the connection's user is
listed in it; an anonymous connection (user null) gets only audience-less
events; `[]` reaches nobody but is still sequenced.

The server runs with a JWT secret, anonymous connections allowed on `prop:*`
only (`--allow-anonymous --anonymous-scopes 'prop:*'`), an API key, and a
queue bound above the number of events, so a slow reader can never make the
server drop anything (any `dropped` is a failure).

Everything random comes from one seed (SC_AUDIENCE_SEED overrides it); the
totals are printed. `AuditSelfTest` checks the checker itself against fake
delivery sets (an inverted audience rule, extra, missing, duplicated and
reordered deliveries), so a broken server cannot pass by accident.
"""

import asyncio
import collections
import os
import random
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import JWT_SECRET, T, Closed, ScopecastTestCase, main, token  # noqa: E402

SEED = int(os.environ.get("SC_AUDIENCE_SEED", "20250611"))
N_CONNS = 50
N_ANON = 10
N_EVENTS = 10000
BATCH = 100  # events per POST /api/emit
EMITTERS = 2  # batches in flight at once
SCOPES = [f"prop:{i}" for i in range(5)]
# Ids that differ only in case, by a prefix or by a trailing space must not
# match each other; one is not ASCII.
USERS = ["alice", "Alice", "bob", "bobby", "carol", "dave", "eve", "frank", "grace", "heidi", "ivan", "zo\u00eb"]
GHOSTS = ["mallory", "bob ", "ALICE", "null", "alic", "zoe"]  # in audiences, used by nobody
API_KEY = "audience-api-key"
MAXSIZE = 16384  # > events per scope (at most N_EVENTS + 1 fence): nothing may be dropped

ABSENT = object()  # the event has no "audience" key


class Conn:
    def __init__(self, idx, user, scopes, blind):
        self.idx = idx
        self.name = f"c{idx:02d}" + (f"[{user}]" if user is not None else "[anon]")
        self.user = user  # None: anonymous
        self.scopes = scopes  # subscribed scopes
        self.blind = blind  # scope -> subscribed with "presence": false
        self.client = None
        self.got = []  # every push but join/leave, in arrival order
        self.fences = set()
        self.ended = None  # why reading stopped early (closed, bad message)

    def __repr__(self):
        return f"{self.name} scopes={sorted(self.scopes)}"


class Event:
    def __init__(self, m, scope, audience):
        self.m = m  # the marker in data: {"m": m}
        self.scope = scope
        self.audience = audience  # ABSENT, None, or a list of ids
        self.seq = None  # from the emit's answer

    def item(self):
        it = {"scope": self.scope, "data": {"m": self.m}}
        if self.audience is not ABSENT:
            it["audience"] = self.audience
        return it

    def __repr__(self):
        aud = "absent" if self.audience is ABSENT else self.audience
        return f"event m={self.m} scope={self.scope} seq={self.seq} audience={aud!r}"


def allowed(conn, ev):
    """The audience rule of docs/PROTOCOL.md, written out."""
    if ev.scope not in conn.scopes:
        return False
    if ev.audience is ABSENT or ev.audience is None:
        return True
    return conn.user is not None and conn.user in ev.audience


def make_world(rng, n_conns=N_CONNS, n_anon=N_ANON, n_events=N_EVENTS):
    """Connections (every user at least once when there are enough token
    connections, the rest drawn at random, so several share a user) and
    events with random scopes and audiences."""
    anon = set(rng.sample(range(n_conns), n_anon))
    n_users = n_conns - n_anon
    users = list(USERS[:n_users]) + [rng.choice(USERS) for _ in range(n_users - len(USERS))]
    rng.shuffle(users)
    conns = []
    for i in range(n_conns):
        user = None if i in anon else users.pop()
        scopes = {s for s in SCOPES if rng.random() < 0.5} or {rng.choice(SCOPES)}
        blind = {s: rng.random() < 0.5 for s in scopes}
        conns.append(Conn(i, user, scopes, blind))
    pool = USERS + GHOSTS
    events = []
    for m in range(n_events):
        r = rng.random()
        if r < 0.25:
            aud = ABSENT
        elif r < 0.30:
            aud = None
        elif r < 0.40:
            aud = []
        elif r < 0.45:
            aud = rng.sample(GHOSTS, rng.randint(1, 3))  # nobody listed is connected
        else:
            aud = [rng.choice(pool) for _ in range(rng.randint(1, 6))]  # duplicates possible
        events.append(Event(m, rng.choice(SCOPES), aud))
    return conns, events


def audit(conns, events):
    """Compares what each connection got (conn.got) with the rule. Returns
    (problems, totals): problems is a list of (kind, text), empty when the
    deliveries are exactly right."""
    problems = []
    by_m = {ev.m: ev for ev in events}
    expected = seen = 0
    for c in conns:
        delivered = collections.Counter()
        last_seq = {}
        for msg in c.got:
            op = msg.get("op")
            if op != "event":
                problems.append(("unexpected push", f"{c}: {msg!r}"))
                continue
            scope, seq, data = msg.get("scope"), msg.get("seq"), msg.get("data")
            prev = last_seq.get(scope, 0)
            if not isinstance(seq, int) or seq <= prev:
                problems.append(("seq order", f"{c}: seq {seq!r} of {scope} after seq {prev}: {msg!r}"))
            if isinstance(seq, int):
                last_seq[scope] = max(prev, seq)
            if scope not in c.scopes:
                problems.append(("not subscribed", f"{c}: event of {scope}: {msg!r}"))
            if isinstance(data, dict) and set(data) == {"fence"}:
                if data["fence"] != scope:
                    problems.append(("bad fence", f"{c}: {msg!r}"))
                continue
            ev = by_m.get(data.get("m")) if isinstance(data, dict) and set(data) == {"m"} else None
            if ev is None:
                problems.append(("unknown event", f"{c}: {msg!r}"))
                continue
            seen += 1
            delivered[ev.m] += 1
            if scope != ev.scope or seq != ev.seq:
                problems.append(("wrong scope/seq", f"{c}: got scope {scope} seq {seq} for {ev}"))
            if not allowed(c, ev):
                problems.append(("outside audience", f"{c}: got {ev}"))
            elif delivered[ev.m] == 2:
                problems.append(("duplicate", f"{c}: got {ev} more than once"))
        for ev in events:
            if allowed(c, ev):
                expected += 1
                if not delivered[ev.m]:
                    problems.append(("missed", f"{c}: did not get {ev}"))
    return problems, {"expected": expected, "seen": seen}


def describe(problems, limit=12):
    kinds = collections.Counter(k for k, _ in problems)
    out = [f"{len(problems)} problem(s): " + ", ".join(f"{k}: {n}" for k, n in sorted(kinds.items()))]
    shown = collections.Counter()
    for k, text in problems:
        if shown[k] < limit:
            out.append(f"  [{k}] {text}")
        shown[k] += 1
    for k, n in sorted(kinds.items()):
        if n > limit:
            out.append(f"  [{k}] ... and {n - limit} more")
    return "\n".join(out)


class AudienceProperty(ScopecastTestCase):
    SERVER_ARGS = ("--jwt-secret", JWT_SECRET, "--allow-anonymous", "--anonymous-scopes", "prop:*",
                   "--api-key", API_KEY, "--maxsize", str(MAXSIZE),
                   # nor by a connection's byte budget (a client slowed by
                   # ASan may hold more than 1 MiB of events for a while)
                   "--max-queued-bytes", "0")
    TEST_TIMEOUT = 90.0

    async def test_random_audiences_reach_exactly_their_users(self):
        # IsolatedAsyncioTestCase runs its loop in debug mode, which records
        # a stack for every future and task: ~100k messages read through
        # wait_for would take minutes instead of seconds
        asyncio.get_running_loop().set_debug(False)
        rng = random.Random(SEED)
        conns, events = make_world(rng)
        t0 = time.monotonic()

        # connect and subscribe
        for c in conns:
            tok = token(c.user) if c.user is not None else None
            c.client = await self.client(token=tok, name=c.name)
            self.assertEqual(c.client.welcome["user"], c.user, f"{c.name}: welcome {c.client.welcome!r}")
            for s in sorted(c.scopes):
                fields = {"presence": False} if c.blind[s] else {}
                r = await c.client.subscribe(s, **fields)
                self.assertEqual(r["seq"], 0, f"{c.name}: nothing was emitted yet: {r!r}")
            c.client.record = False  # conn.got keeps what the audit needs
        t_setup = time.monotonic() - t0

        # read everything each connection gets until the fence (the last
        # event) of each of its scopes: seq order then means nothing of the
        # scope can still be on its way
        deadline = [None]

        async def reader(c):
            while c.fences != c.scopes:
                left = (deadline[0] - time.monotonic()) if deadline[0] is not None else T()
                if left <= 0:
                    return
                try:
                    msg = await c.client.next(timeout=min(1.0, left))
                except Closed as e:
                    c.ended = e
                    return
                except AssertionError as e:
                    if "no message within" in str(e):
                        continue
                    c.ended = e  # not JSON, a binary frame, ...
                    return
                op = msg.get("op")
                if op in ("join", "leave"):
                    continue
                c.got.append(msg)
                if op == "event" and isinstance(msg.get("data"), dict) and "fence" in msg["data"]:
                    c.fences.add(msg["scope"])

        readers = [asyncio.create_task(reader(c)) for c in conns]

        # emit: EMITTERS workers posting batches of BATCH
        t1 = time.monotonic()
        batches = iter(range(0, N_EVENTS, BATCH))

        async def emitter():
            for start in batches:
                chunk = events[start:start + BATCH]
                seqs = await self.srv.emit_batch([ev.item() for ev in chunk])
                for ev, seq in zip(chunk, seqs):
                    ev.seq = seq

        await asyncio.gather(*(emitter() for _ in range(EMITTERS)))
        fence_seqs = await self.srv.emit_batch([{"scope": s, "data": {"fence": s}} for s in SCOPES])
        t_emit = time.monotonic() - t1
        deadline[0] = time.monotonic() + T(6)
        await asyncio.gather(*readers)
        t_deliver = time.monotonic() - t1
        # nothing may follow the fences (it would be out of seq order)
        trailing = await asyncio.gather(*(c.client.quiet(T(0.1)) for c in conns if c.ended is None))
        for c, extra in zip([c for c in conns if c.ended is None], trailing):
            c.got += [m for m in extra if m.get("op") not in ("join", "leave")]

        # every accepted emit rises its scope's seq by one, whoever emits
        per_scope = collections.defaultdict(list)
        for ev in events:
            per_scope[ev.scope].append(ev.seq)
        for s, fseq in zip(SCOPES, fence_seqs):
            n = len(per_scope[s])
            subscribed = any(s in c.scopes for c in conns)
            want = list(range(1, n + 1)) if subscribed else [0] * n
            self.assertEqual(sorted(per_scope[s]), want, f"seqs answered for {s}")
            self.assertEqual(fseq, n + 1 if subscribed else 0, f"seq of the fence of {s}")

        problems, totals = audit(conns, events)
        for c in conns:
            if c.fences != c.scopes:
                problems.append(("timeout", f"{c}: no fence of {sorted(c.scopes - c.fences)} within "
                                 f"{T(6):.0f} s after the last emit; got {len(c.got)} pushes"))
            if c.ended is not None:
                problems.append(("connection ended", f"{c}: {c.ended}"))
        stats = await self.srv.stats()

        kinds = collections.Counter(
            "absent" if ev.audience is ABSENT else "null" if ev.audience is None
            else "[]" if not ev.audience else "ids" for ev in events)
        print(f"\n  audience: seed {SEED}; {len(conns)} connections ({N_ANON} anonymous, "
              f"{len({c.user for c in conns if c.user is not None})} users), "
              f"{sum(len(c.scopes) for c in conns)} subscriptions over {len(SCOPES)} scopes; "
              f"{len(events)} events (audience {dict(sorted(kinds.items()))}) in {len(events) // BATCH} batches; "
              f"deliveries expected {totals['expected']}, seen {totals['seen']}, problems {len(problems)}; "
              f"server stats emitted {stats.get('emitted')} dropped {stats.get('dropped')}; "
              f"setup {t_setup:.1f} s, emit {t_emit:.1f} s, emit+deliver {t_deliver:.1f} s", flush=True)

        if problems:
            self.fail(describe(problems))
        self.assertEqual(totals["seen"], totals["expected"])
        self.assertEqual(stats.get("dropped"), 0, stats)
        self.assertEqual(stats.get("emitted"), N_EVENTS + len(SCOPES), stats)


class AuditSelfTest(unittest.TestCase):
    """The checker against fake delivery sets: it passes the exact set and
    catches every kind of deviation (no server involved)."""

    def world(self):
        conns, events = make_world(random.Random(7), n_conns=12, n_anon=3, n_events=400)
        seq = collections.Counter()
        for ev in events:
            seq[ev.scope] += 1
            ev.seq = seq[ev.scope]
        return conns, events

    @staticmethod
    def deliver(conns, events, rule):
        for c in conns:
            c.got = [{"op": "event", "scope": ev.scope, "seq": ev.seq, "paths": [], "origin": None,
                      "data": {"m": ev.m}} for ev in events if rule(c, ev)]

    def kinds(self, conns, events):
        return collections.Counter(k for k, _ in audit(conns, events)[0])

    def test_exact_deliveries_pass(self):
        conns, events = self.world()
        self.deliver(conns, events, allowed)
        problems, totals = audit(conns, events)
        self.assertEqual(problems, [])
        self.assertEqual(totals["seen"], totals["expected"])
        self.assertGreater(totals["expected"], 100)

    def test_inverted_audience_rule_fails(self):
        conns, events = self.world()

        def inverted(c, ev):  # the audience check turned around
            if ev.scope not in c.scopes:
                return False
            if ev.audience is ABSENT or ev.audience is None:
                return True
            return not (c.user is not None and c.user in ev.audience)
        self.deliver(conns, events, inverted)
        k = self.kinds(conns, events)
        self.assertGreater(k["outside audience"], 0)
        self.assertGreater(k["missed"], 0)

    def test_audience_ignored_fails(self):
        conns, events = self.world()
        self.deliver(conns, events, lambda c, ev: ev.scope in c.scopes)
        k = self.kinds(conns, events)
        self.assertGreater(k["outside audience"], 0)
        self.assertEqual(k["missed"], 0)

    def test_anonymous_matching_fails(self):
        # anonymous treated as a user listed everywhere; a user matching by prefix / case
        for rule in (lambda c, ev: allowed(c, ev) or (ev.scope in c.scopes and c.user is None),
                     lambda c, ev: ev.scope in c.scopes and (
                         ev.audience is ABSENT or ev.audience is None
                         or any(c.user is not None and a.lower().startswith(c.user.lower()[:3])
                                for a in ev.audience))):
            conns, events = self.world()
            self.deliver(conns, events, rule)
            self.assertGreater(self.kinds(conns, events)["outside audience"], 0)

    def test_hand_written_cases(self):
        anon = Conn(0, None, {"prop:0"}, {})
        bob = Conn(1, "bob", {"prop:0"}, {})
        other = Conn(2, "alice", {"prop:1"}, {})
        evs = [Event(0, "prop:0", ["alice"]), Event(1, "prop:0", ["bobby", "Bob", "bob "]),
               Event(2, "prop:0", []), Event(3, "prop:0", None), Event(4, "prop:0", ABSENT),
               Event(5, "prop:0", ["bob"])]
        for i, ev in enumerate(evs):
            ev.seq = i + 1
        self.assertEqual([allowed(anon, ev) for ev in evs], [False, False, False, True, True, False])
        self.assertEqual([allowed(bob, ev) for ev in evs], [False, False, False, True, True, True])
        self.assertEqual([allowed(other, ev) for ev in evs], [False] * 6)

    def test_missing_duplicate_reordered_dropped_fail(self):
        conns, events = self.world()
        self.deliver(conns, events, allowed)
        c = max(conns, key=lambda c: len(c.got))
        good = list(c.got)
        i = next(i for i in range(1, len(good)) if good[i]["scope"] == good[0]["scope"])
        swapped = list(good)
        swapped[0], swapped[i] = swapped[i], swapped[0]
        cases = {
            "missed": good[:5] + good[6:],
            "duplicate": good + [good[3]],
            "seq order": swapped,
            "unexpected push": good + [{"op": "dropped", "scope": good[0]["scope"], "count": 1}],
            "wrong scope/seq": [dict(good[0], seq=good[0]["seq"] + 1000)] + good[1:],
            "unknown event": good + [{"op": "event", "scope": good[-1]["scope"], "seq": 10 ** 6,
                                      "data": {"m": 10 ** 6}}],
        }
        for kind, got in cases.items():
            c.got = got
            self.assertGreater(self.kinds(conns, events)[kind], 0, kind)
        # an event of a scope the connection did not subscribe to
        c.got = good
        ev = next(ev for ev in events if ev.scope not in c.scopes)
        c.got = good + [{"op": "event", "scope": ev.scope, "seq": ev.seq, "data": {"m": ev.m}}]
        k = self.kinds(conns, events)
        self.assertGreater(k["not subscribed"], 0)
        self.assertGreater(k["outside audience"], 0)


if __name__ == "__main__":
    main()
