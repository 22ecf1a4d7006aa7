#!/usr/bin/python3
"""Back-pressure: a client that stops reading must not slow down or grow the
server, and must get exact `dropped` accounting when it reads again
(docs/PROTOCOL.md "queues", "dropped")."""

import asyncio
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (CONFIG, OP_PING, OP_TEXT, T, ScopecastTestCase, build_frame, check_drop_accounting,  # noqa: E402
                     main)

MAXSIZE = 16
N_EVENTS = 10000
BATCH = MAXSIZE  # a batch is enqueued at once: more than maxsize would overflow even a fast reader
PAYLOAD = 4000  # characters of data per event: ~4 KB frames
SLACK_BYTES = 16 * 1024 * 1024


class SlowClient(ScopecastTestCase):
    SERVER_ARGS = ("--maxsize", str(MAXSIZE))
    TEST_TIMEOUT = 150.0

    async def test_slow_client_does_not_hurt(self):
        S = "slow:doc"
        normal = await self.client(name="normal")
        normal.record = False
        sub_n = await normal.subscribe(S)
        slow = await self.raw(rcvbuf=4096, name="slow")
        sub_s = await slow.subscribe(S)
        self.assertEqual(slow.welcome["maxsize"], MAXSIZE)
        self.assertSub(await normal.push(S), {"op": "join"})
        slow.pause()  # stop reading; with a tiny SO_RCVBUF the kernel holds little
        base_seq = sub_n["seq"]
        self.assertEqual(sub_s["seq"], base_seq)
        last_seq = base_seq + N_EVENTS

        progress = {"seq": base_seq, "seqs": [], "dropped": [], "bad": []}

        async def collect():
            while progress["seq"] < last_seq:
                try:
                    m = await normal.next(timeout=T(2))
                except AssertionError as e:
                    raise AssertionError(f"{e}; normal subscriber got up to seq {progress['seq']} of {last_seq}, "
                                         f"{len(progress['seqs'])} events, dropped notices {progress['dropped']}")
                if m.get("scope") != S:
                    continue
                if m["op"] == "event":
                    progress["seqs"].append(m["seq"])
                    progress["seq"] = m["seq"]
                    want = f"{m['seq'] - base_seq - 1:06d}"
                    if not isinstance(m.get("data"), str) or not m["data"].startswith(want):
                        progress["bad"].append((m["seq"], str(m.get("data"))[:10]))
                elif m["op"] == "dropped":
                    progress["dropped"].append(m)

        collector = asyncio.create_task(collect())
        rss0 = self.srv.rss_kib()
        rss_peak = rss0
        t0 = time.monotonic()
        i = 0
        try:
            while i < N_EVENTS:
                items = [{"scope": S, "data": f"{k:06d}" + "x" * (PAYLOAD - 6)} for k in range(i, i + BATCH)]
                seqs = await self.srv.emit_batch(items)
                self.assertEqual(seqs, list(range(base_seq + i + 1, base_seq + i + BATCH + 1)))
                i += BATCH
                rss_peak = max(rss_peak, self.srv.rss_kib())
                # lockstep with the normal client: its queue is empty before the next batch,
                # so it never has a reason to drop
                deadline = time.monotonic() + T(2)
                while progress["seq"] < base_seq + i and not collector.done():
                    self.assertLess(time.monotonic(), deadline, "the normal subscriber stopped receiving")
                    await asyncio.sleep(0.002)
                if collector.done():
                    collector.result()
            await asyncio.wait_for(collector, T(4))
        finally:
            collector.cancel()
        emit_time = time.monotonic() - t0
        rss1 = self.srv.rss_kib()
        rss_peak = max(rss_peak, rss1)
        print(f"\n  {N_EVENTS} events in {emit_time:.2f} s; VmRSS before {rss0} KiB, after {rss1} KiB, "
              f"peak sample {rss_peak} KiB", file=sys.stderr)

        # the normal subscriber got every event, in order, nothing dropped
        self.assertEqual(progress["dropped"], [], "the normal subscriber must not drop")
        self.assertEqual(progress["seqs"], list(range(base_seq + 1, last_seq + 1)))
        self.assertEqual(progress["bad"], [], "events carry their own data")

        # memory stays bounded by the queues, not by what the slow client missed
        frame = PAYLOAD + 200
        bound = MAXSIZE * 2 * frame + SLACK_BYTES
        if CONFIG.sanitized:
            print("  (sanitizer build: RSS bound not checked)", file=sys.stderr)
        else:
            self.assertLess((rss1 - rss0) * 1024, bound,
                            f"VmRSS grew from {rss0} to {rss1} KiB with a client that does not read")
            self.assertLess((rss_peak - rss0) * 1024, bound,
                            f"VmRSS peaked at {rss_peak} KiB (from {rss0}) with a client that does not read")

        # the slow client reads again: events, `dropped` for the gap, later events in order
        slow.resume()
        await slow.drain(idle=1.0, limit=60)
        tail = [await self.srv.emit(S, data=f"tail{k}") for k in range(20)]
        self.assertEqual(tail, list(range(last_seq + 1, last_seq + 21)))
        msgs = await slow.events_until(S, tail[-1], timeout=T(2))
        received, dropped = check_drop_accounting(msgs, base_seq + 1, tail[-1])
        self.assertGreater(dropped, 0, "a client that did not read for 40 MB must have dropped events")
        self.assertEqual(received + dropped, N_EVENTS + 20)
        self.assertEqual([m.get("data") for m in msgs[-20:]], [f"tail{k}" for k in range(20)],
                         "events after the notice arrive in order")
        print(f"  slow client: received {received}, dropped {dropped} "
              f"({len([m for m in msgs if m['op'] == 'dropped'])} notices)", file=sys.stderr)
        st = await self.srv.stats()
        self.assertEqual(st["dropped"], dropped, f"/api/stats: {st}")
        self.assertEqual((await slow.call("ping"))["op"], "pong")
        # and the normal subscriber got the tail too
        normal.record = True
        got = [await normal.push(S) for _ in range(20)]
        self.assertEqual([m.get("seq") for m in got], tail)


class ConnectionByteBudget(ScopecastTestCase):
    """Ten clients subscribed to 50 scopes each stop reading while 60 KB
    events keep coming: each keeps at most --max-queued-bytes (1 MiB) of
    events alive (the default queues, 256 per subscription, would hold
    every event), a reading subscriber loses nothing, and the ten get
    `dropped` notices for what they missed."""
    TEST_TIMEOUT = 240.0
    SCOPES = [f"feed:{i}" for i in range(50)]
    ROUNDS = 16
    DATA = "d" * 60000

    async def test_ten_clients_that_do_not_read_stay_within_the_budget(self):
        reader = await self.client(name="reader")
        for sc in self.SCOPES:
            await reader.send({"op": "subscribe", "scope": sc, "presence": False})
        base = {}
        for sc in self.SCOPES:
            base[sc] = (await reader.wait("subscribed", scope=sc, timeout=T(2)))["seq"]
        idle = []
        for k in range(10):
            c = await self.raw(name=f"idle{k}", rcvbuf=4096)
            for sc in self.SCOPES:
                await c.send({"op": "subscribe", "scope": sc, "presence": False})
            for sc in self.SCOPES:
                await c.wait("subscribed", scope=sc, timeout=T(2))
            c.pause()
            idle.append(c)
        rss0 = self.srv.rss_kib()
        got = {sc: 0 for sc in self.SCOPES}

        async def read_all(n):
            while sum(got.values()) < n:
                m = await reader.next(timeout=T(2))
                if m["op"] == "event":
                    got[m["scope"]] += 1
                self.assertNotEqual(m["op"], "dropped", "the reader must not drop")

        peak = rss0
        n = 0
        for r in range(self.ROUNDS):  # 800 events of 60 KB: 48 MB
            for sc in self.SCOPES:
                await self.srv.emit(sc, data=self.DATA)
                n += 1
                # lockstep: the reader's own budget (1 MiB, 16 such events)
                # never fills, however slow this machine is
                await read_all(n)
            peak = max(peak, self.srv.rss_kib())
        grown = (peak - rss0) * 1024
        print(f"\n  VmRSS {rss0} KiB before, peak {peak} KiB", file=sys.stderr)
        # ten budgets of 1 MiB (the same events, mostly), plus a write held
        # per client and the allocator's slack
        if not CONFIG.sanitized:
            self.assertLess(grown, 40 << 20, f"VmRSS grew by {grown >> 20} MiB")
        st = (await self.srv.request("GET", "/metrics")).body.decode()
        queued = int(re.search(r"^scopecast_queued_bytes (\d+)$", st, re.M).group(1))
        print(f"  queued now {queued} bytes", file=sys.stderr)
        self.assertLess(queued, 10 * (1 << 20) + 10 * 70000)
        # they read again: what they missed is announced, later events come
        for c in idle:
            c.resume()
        tail = {sc: await self.srv.emit(sc, data="tail") for sc in self.SCOPES}
        for c in idle:
            total_dropped = 0
            for sc in self.SCOPES:
                msgs = await c.events_until(sc, tail[sc], timeout=T(4))
                received, dropped = check_drop_accounting(msgs, base[sc] + 1, tail[sc])
                self.assertEqual(received + dropped, self.ROUNDS + 1)
                total_dropped += dropped
            self.assertGreater(total_dropped, 0, c.name)
        await read_all(self.ROUNDS * len(self.SCOPES) + len(self.SCOPES))


class RepliesNotRead(ScopecastTestCase):
    SERVER_ARGS = ("--heartbeat", "1")

    async def test_unread_replies_pause_reading_then_1008(self):
        """A client that sends requests (here WebSocket pings) but never reads
        the answers: past 1 MiB of unsent replies the server stops reading it
        (the replies stay under SC_CTL_LIMIT, 4 MiB), others are served
        meanwhile, and at the heartbeat deadline it is closed with 1008 (not
        4408: it was silent because it was not read)."""
        other = await self.client(name="other")
        c = await self.raw(name="flooder", rcvbuf=4096)
        c.pause()
        rss0 = self.srv.rss_kib()
        chunk = build_frame(OP_PING, b"p" * 125) * 2000  # 2000 pongs: 254 KB of replies
        for _ in range(48):  # 12 MB of pongs asked for
            c.send_raw(chunk)
            await asyncio.sleep(0.01)
        self.assertEqual((await other.call("ping"))["op"], "pong", "others are served meanwhile")
        grown = self.srv.rss_kib() - rss0
        if not CONFIG.sanitized:  # ASan's quarantine keeps freed memory
            self.assertLess(grown, 8 * 1024, f"RSS grew by {grown} KiB for one client's unread replies")
        await asyncio.sleep(3.5)  # two heartbeats without a frame read, and the tick
        c.resume()
        closed = await c.wait_closed(timeout=30)
        self.assertEqual(closed.code, 1008, f"{closed}")
        self.assertEqual((await other.call("ping"))["op"], "pong")


class PingOnFrameBoundary(ScopecastTestCase):
    """The heartbeat ping waits for the end of a reply sent in part (RFC 6455
    5.4), instead of going out in the middle of its frame."""
    SERVER_ARGS = ("--max-message", "8000000", "--heartbeat", "1")

    async def test_ping_after_a_half_sent_reply(self):
        for n in range(3):
            c = await self.raw(name=f"slow{n}", rcvbuf=4096)
            c.pause()  # the reply is sent in part; pings fall due meanwhile
            big = "z" * 3000000
            await c.send({"op": "ping", "id": big})
            await asyncio.sleep(1.5)
            c.resume()
            pong = await c.wait(op="pong", timeout=T())
            self.assertEqual(pong.get("id"), big, f"run {n}: the pong arrives whole")
            self.assertSub(await c.call("ping"), {"op": "pong"})
            await c.close()


class ReaderGetsEveryReply(ScopecastTestCase):
    """A client that reads but sends many requests with large replies in one
    write is slowed down (its input is not read while 1 MiB of replies wait)
    and gets every reply, instead of being closed with 1008 at 4 MiB."""
    SERVER_ARGS = ("--max-meta", "8000", "--max-meta-total", "1000000")

    async def test_100_pings_with_60_kb_ids_in_one_write(self):
        c = await self.raw(name="reader")
        ids = [f"{i:04d}" + "i" * 60000 for i in range(100)]  # 6 MB of pongs
        c.send_raw(b"".join(build_frame(OP_TEXT, json.dumps({"op": "ping", "id": x}).encode())
                            for x in ids))
        for x in ids:
            pong = await c.wait("pong", timeout=T(2))
            self.assertEqual(pong.get("id"), x)
        self.assertSub(await c.call("ping"), {"op": "pong"})

    async def test_100_subscribes_in_one_write_get_100_replies(self):
        scopes = [f"room:{i}" for i in range(100)]
        meta = {"pad": "m" * 6000}
        members = []
        for k in range(10):  # each room lists 10 members with 6 KB metas
            m = await self.client(name=f"member{k}")
            for sc in scopes:
                await m.send({"op": "subscribe", "scope": sc, "meta": meta})
            for sc in scopes:
                await m.wait("subscribed", scope=sc, timeout=T(2))
            members.append(m)
        c = await self.raw(name="joiner")  # ~60 KB per reply: 6 MB in all
        c.send_raw(b"".join(build_frame(OP_TEXT, json.dumps({"op": "subscribe", "scope": sc}).encode())
                            for sc in scopes))
        for sc in scopes:
            r = await c.wait("subscribed", scope=sc, timeout=T(2))
            self.assertEqual(len(r["presence"]), 11, sc)  # and the joiner
        self.assertSub(await c.call("ping"), {"op": "pong"})


class CloseOnFrameBoundary(ScopecastTestCase):
    """RFC 6455 5.4: a control frame may come only between frames. A reply
    larger than one packed write (16 KB) goes out in slices; a close that
    comes meanwhile (the client's, or a protocol failure) must wait for the
    rest of the frame."""
    SERVER_ARGS = ("--max-message", "8000000")

    async def check_run(self, n, finish):
        c = await self.raw(name=f"slow{n}", rcvbuf=4096)
        c.pause()  # the reply is sent in part and held
        big = "y" * 3000000  # more than the socket buffers take at once
        await c.send({"op": "ping", "id": big})
        await asyncio.sleep(0.2)
        finish(c)
        c.resume()
        pong = await c.wait(op="pong", timeout=T())
        self.assertEqual(pong.get("id"), big, f"run {n}: the pong arrives whole")
        return await c.wait_closed()

    async def test_client_close_waits_for_a_half_sent_reply(self):
        for n in range(25):  # with the other test: 50 of 50 runs well-formed
            closed = await self.check_run(n, lambda c: c.send_close(1000))
            self.assertEqual(closed.code, 1000, f"run {n}: {closed}")

    async def test_protocol_failure_close_waits_for_a_half_sent_reply(self):
        for n in range(10):
            # an unmasked frame: 1002
            closed = await self.check_run(n, lambda c: c.send_raw(b"\x81\x01x"))
            self.assertEqual(closed.code, 1002, f"run {n}: {closed}")


if __name__ == "__main__":
    main()
