#!/usr/bin/python3
"""The fswatch plugin (plugins/fswatch) loaded into the real server: changes
in a watched directory tree reach WebSocket subscribers of its scope as
coalesced events with relative paths, within 200 ms of the write;
directories created, moved and deleted later are followed; ignore patterns
hold; a bad config stops the server at start with the plugin's message.

The plugin is $SC_PLUGIN_DIR/fswatch.so (ctest sets SC_PLUGIN_DIR to
<build>/plugins)."""

import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import run_server  # noqa: E402
from harness import CONFIG, T, ScopecastTestCase, main, no_server  # noqa: E402

SCOPE = "files"
LATENCY_MAX = 0.2  # seconds from the write to the subscriber


def plugin_path():
    d = os.environ.get("SC_PLUGIN_DIR")
    if not d:
        raise AssertionError("SC_PLUGIN_DIR is not set (the directory holding fswatch.so)")
    p = os.path.abspath(os.path.join(d, "fswatch.so"))
    if not os.path.isfile(p):
        raise AssertionError(f"{p} not found: build the sc_plugin_fswatch target")
    return p


def plugin_arg(cfg):
    """One argv element: PATH:CONFIG_JSON."""
    return f"{plugin_path()}:{json.dumps(cfg, separators=(',', ':'))}"


def write(path, data="x\n"):
    with open(path, "w") as f:
        f.write(data)



class FsWatchCase(ScopecastTestCase):
    def tmpdir(self):
        d = tempfile.mkdtemp(prefix="fswatch-it-")
        self.addCleanup(shutil.rmtree, d, True)
        return d

    async def watch(self, scope=SCOPE, **cfg):
        """A new directory, a server watching it (cfg: extra plugin config)
        and a client subscribed to `scope`. Returns (dir, client)."""
        d = cfg.pop("dir", None) or self.tmpdir()
        conf = {"dir": d}
        if scope is not None:
            conf["scope"] = scope
        conf.update(cfg)
        self.srv = self.start_server("--plugin", plugin_arg(conf))
        c = await self.client()
        await c.subscribe(scope or "fswatch")
        return d, c

    def check_event(self, m):
        """docs/PROTOCOL.md event; the plugin's paths are sorted and unique,
        relative ('/'-separated, no leading "./" or "/"), data.count is
        their number."""
        paths = m.get("paths")
        self.assertIsInstance(paths, list, m)
        self.assertEqual(paths, sorted(set(paths)), f"paths not sorted and unique: {m!r}")
        for p in paths:
            self.assertFalse(p.startswith("/") or p.startswith("./") or p == "", m)
        self.assertIsInstance(m.get("data"), dict, m)
        self.assertEqual(m["data"].get("count"), len(paths), m)
        return paths

    async def collect(self, c, scope, want, timeout=None):
        """Events of `scope` until every path of `want` was seen. Returns the
        events (each checked) with their arrival times."""
        want = set(want)
        seen, events = set(), []
        deadline = time.monotonic() + (timeout or T())
        while not want <= seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"paths never reported: {sorted(want - seen)[:20]} "
                                     f"({len(want - seen)} of {len(want)}); events: {events!r}")
            m = await c.wait("event", scope=scope, timeout=left)
            events.append((time.monotonic(), m))
            seen |= set(self.check_event(m))
        return events

    async def wait_path(self, c, path, scope=SCOPE, timeout=None):
        m = await c.wait("event", scope=scope, timeout=timeout,
                         pred=lambda m: path in (m.get("paths") or []))
        self.check_event(m)
        return m


class Delivery(FsWatchCase):
    @no_server
    async def test_a_written_file_reaches_a_subscriber_within_200_ms(self):
        d, c = await self.watch()
        lat = []
        for i in range(12):
            await c.quiet(0.25)  # nothing left over from the previous round
            name = f"file{i}.txt"
            t0 = time.monotonic()
            write(os.path.join(d, name), f"round {i}\n")
            m = await self.wait_path(c, name)
            lat.append(time.monotonic() - t0)
            # one write (IN_CREATE, IN_CLOSE_WRITE) is one path in one event
            self.assertEqual(m["paths"], [name], m)
            self.assertEqual(m["data"], {"count": 1}, m)
            self.assertIsNone(m.get("origin"), m)
        print(f"\n  fswatch latency write -> subscriber over {len(lat)} writes: "
              f"median {statistics.median(lat) * 1000:.1f} ms, min {min(lat) * 1000:.1f} ms, "
              f"max {max(lat) * 1000:.1f} ms", flush=True)
        slow = [f"{x * 1000:.0f} ms" for x in lat if x >= LATENCY_MAX]
        self.assertFalse(slow, f"writes that took 200 ms or more to arrive: {slow} (all: {lat!r})")
        # modifying, renaming and deleting are changes too
        await c.quiet(0.25)
        with open(os.path.join(d, "file0.txt"), "a") as f:
            f.write("more\n")
        await self.wait_path(c, "file0.txt")
        await c.quiet(0.25)
        os.rename(os.path.join(d, "file1.txt"), os.path.join(d, "renamed.txt"))
        m = await self.wait_path(c, "renamed.txt")
        self.assertIn("file1.txt", m["paths"], m)
        await c.quiet(0.25)
        os.unlink(os.path.join(d, "file2.txt"))
        await self.wait_path(c, "file2.txt")

    @no_server
    async def test_a_burst_of_100_files_arrives_coalesced(self):
        d, c = await self.watch()
        names = [f"burst-{i:03d}.txt" for i in range(100)]
        await asyncio.to_thread(lambda: [write(os.path.join(d, n)) for n in names])
        events = await self.collect(c, SCOPE, names)
        msgs = [m for _, m in events]
        self.assertLess(len(msgs), 10, f"100 files in {len(msgs)} events; the first: "
                        f"{[m['paths'][:3] for m in msgs[:5]]}")
        got = [p for m in msgs for p in m["paths"]]
        self.assertEqual(sorted(set(got)), names)
        # and nothing else comes of it
        extra = await c.quiet(0.4, op="event")
        self.assertEqual(extra, [], "events after the burst was reported")
        print(f"\n  fswatch: 100 files -> {len(msgs)} event(s)", flush=True)

    @no_server
    async def test_a_steady_stream_still_gets_through(self):
        """One file every 20 ms for 1 s: the burst is never quiet for the
        50 ms debounce, so only max_delay_ms (200) lets events out."""
        d, c = await self.watch()
        names = [f"tick-{i:02d}.txt" for i in range(50)]
        t0 = time.monotonic()

        def writer():
            for i, n in enumerate(names):
                delay = t0 + i * 0.02 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                write(os.path.join(d, n))

        th = threading.Thread(target=writer)
        th.start()
        try:
            events = await self.collect(c, SCOPE, names)
        finally:
            th.join()
        first = events[0][0] - t0
        self.assertLess(first, 0.5, f"first event {first:.3f} s after the stream started (it lasts 1 s)")
        self.assertGreaterEqual(len(events), 3, f"a 1 s stream in {len(events)} event(s)")
        print(f"\n  fswatch: 1 s stream -> {len(events)} events, first after {first * 1000:.0f} ms",
              flush=True)

    @no_server
    async def test_an_event_holds_at_most_max_paths(self):
        d, c = await self.watch(max_paths=5, debounce_ms=100, max_delay_ms=500)
        for i in range(20):
            write(os.path.join(d, f"f{i:02d}"))
        m = await c.wait("event", scope=SCOPE)
        self.assertEqual(len(m["paths"]), 5, m)
        self.assertEqual(m["data"], {"count": 5, "truncated": True}, m)


class Directories(FsWatchCase):
    @no_server
    async def test_files_in_directories_created_later(self):
        d, c = await self.watch()
        # written at once: the watch of sub/ may not exist yet
        os.mkdir(os.path.join(d, "sub"))
        write(os.path.join(d, "sub", "x.txt"))
        await self.wait_path(c, "sub/x.txt")
        await c.quiet(0.25)
        # later: now through the watch of sub/
        t0 = time.monotonic()
        write(os.path.join(d, "sub", "y.txt"))
        m = await self.wait_path(c, "sub/y.txt")
        self.assertEqual(m["paths"], ["sub/y.txt"], m)
        self.assertLess(time.monotonic() - t0, LATENCY_MAX)
        # a tree at once, and a file deep in it later
        os.makedirs(os.path.join(d, "a", "b", "c"))
        write(os.path.join(d, "a", "b", "c", "deep.txt"))
        await self.wait_path(c, "a/b/c/deep.txt")
        await c.quiet(0.25)
        write(os.path.join(d, "a", "b", "c", "later.txt"))
        m = await self.wait_path(c, "a/b/c/later.txt")
        self.assertEqual(m["paths"], ["a/b/c/later.txt"], m)

    @no_server
    async def test_moved_and_deleted_directories(self):
        d = self.tmpdir()
        os.makedirs(os.path.join(d, "old", "inner"))
        outside = self.tmpdir()
        os.makedirs(os.path.join(outside, "incoming", "deeper"))
        write(os.path.join(outside, "incoming", "deeper", "was-there.txt"))
        d, c = await self.watch(dir=d)
        # renamed inside the tree: the new name is reported, and files in it
        # later carry the new path, not the old one
        os.rename(os.path.join(d, "old"), os.path.join(d, "new"))
        m = await self.wait_path(c, "new")
        self.assertIn("old", m["paths"], m)
        await c.quiet(0.25)
        write(os.path.join(d, "new", "inner", "z.txt"))
        m = await self.wait_path(c, "new/inner/z.txt")
        self.assertEqual(m["paths"], ["new/inner/z.txt"], m)
        # moved in from outside: what it holds is reported and watched
        await c.quiet(0.25)
        os.rename(os.path.join(outside, "incoming"), os.path.join(d, "incoming"))
        await self.wait_path(c, "incoming/deeper/was-there.txt")
        await c.quiet(0.25)
        write(os.path.join(d, "incoming", "deeper", "new.txt"))
        await self.wait_path(c, "incoming/deeper/new.txt")
        # moved out: no longer reported
        await c.quiet(0.25)
        os.rename(os.path.join(d, "incoming"), os.path.join(outside, "gone"))
        await self.wait_path(c, "incoming")
        await c.quiet(0.25)
        write(os.path.join(outside, "gone", "deeper", "outside.txt"))
        write(os.path.join(d, "marker.txt"))
        m = await self.wait_path(c, "marker.txt")
        later = await c.quiet(0.3, op="event")
        for ev in [m] + later:
            for p in ev["paths"]:
                self.assertNotIn("outside", p, f"a change outside the tree was reported: {ev!r}")
        # deleted and created again under the same name: watched again
        shutil.rmtree(os.path.join(d, "new"))
        await self.wait_path(c, "new")
        await c.quiet(0.25)
        os.mkdir(os.path.join(d, "new"))
        await self.wait_path(c, "new")
        await c.quiet(0.25)
        write(os.path.join(d, "new", "again.txt"))
        await self.wait_path(c, "new/again.txt")

    @no_server
    async def test_ignore_patterns_and_the_default_scope(self):
        d = self.tmpdir()
        os.mkdir(os.path.join(d, ".git"))
        d, c = await self.watch(dir=d, scope=None, ignore=[".git", "node_modules", "*.swp"])
        write(os.path.join(d, ".git", "HEAD"))  # in a directory present at start
        os.makedirs(os.path.join(d, "node_modules", "pkg"))  # created later
        write(os.path.join(d, "node_modules", "pkg", "index.js"))
        write(os.path.join(d, ".page.html.swp"))
        write(os.path.join(d, "sub.swp"))
        os.mkdir(os.path.join(d, "src"))
        write(os.path.join(d, "src", ".x.swp"))
        write(os.path.join(d, "notes.swp.txt"))  # not *.swp
        write(os.path.join(d, "src", "page.html"))
        m = await self.wait_path(c, "src/page.html", scope="fswatch")
        events = [m] + await c.quiet(0.4, op="event")
        seen = {p for ev in events for p in self.check_event(ev)}
        self.assertIn("notes.swp.txt", seen)
        self.assertIn("src", seen)
        for p in seen:
            parts = p.split("/")
            self.assertFalse(".git" in parts or "node_modules" in parts or p.endswith(".swp"),
                             f"ignored path {p!r} reported: {sorted(seen)}")
        # still ignored later (node_modules was never watched)
        await c.quiet(0.25)
        write(os.path.join(d, "node_modules", "pkg", "later.js"))
        write(os.path.join(d, ".git", "index"))
        write(os.path.join(d, "visible.txt"))
        m = await self.wait_path(c, "visible.txt", scope="fswatch")
        self.assertEqual(m["paths"], ["visible.txt"], m)


class ExamplePage(FsWatchCase):
    @no_server
    async def test_the_live_reload_page_is_served_and_uses_the_client(self):
        d, c = await self.watch(dir=CONFIG.web_root, scope=None)
        res = await self.srv.request("GET", "/examples/live-reload.html")
        self.assertEqual(res.status, 200, res)
        self.assertIn("text/html", res.header("Content-Type"))
        self.assertIn("import { connect } from '/scopecast.js'", res.text)
        self.assertIn("location.reload()", res.text)
        self.assertIn("|| 'fswatch'", res.text, "the page's default scope is the plugin's")


class BadConfig(FsWatchCase):
    def refuses(self, cfg, message):
        rc, out = run_server("--port", "0", "--web-root", CONFIG.web_root,
                             "--plugin", plugin_arg(cfg))
        self.assertNotEqual(rc, 0, f"server with {cfg!r} started:\n{out}")
        self.assertGreater(rc, 0, f"server with {cfg!r} died of signal {-rc}:\n{out}")
        self.assertIn(message, out, f"config {cfg!r}")
        self.assertNotIn("Sanitizer", out)
        return out

    @no_server
    async def test_bad_configs_stop_the_server_at_start(self):
        d = self.tmpdir()
        f = os.path.join(d, "plain-file")
        write(f)
        cases = [
            ({"scope": SCOPE}, '"dir" is required'),
            ({"dir": "/nonexistent/fswatch-it"}, "'/nonexistent/fswatch-it': No such file or directory"),
            ({"dir": f}, f"'{f}': not a directory"),
            ({"dir": d, "debounce": 10}, 'unknown key "debounce"'),
            ({"dir": d, "debounce_ms": "fast"}, '"debounce_ms" must be an integer'),
            ({"dir": d, "max_delay_ms": 10, "debounce_ms": 50},
             '"max_delay_ms" (10) must be at least "debounce_ms" (50)'),
            ({"dir": d, "max_paths": 20000}, '"max_paths" must be an integer from 1 to 10000'),
            ({"dir": d, "ignore": "*.swp"}, '"ignore" must be an array'),
            ({"dir": d, "ignore": ["a/b"]}, "\"ignore\"[0] must be a non-empty name pattern without '/'"),
            ({"dir": d, "scope": ""}, '"scope" must be a non-empty string'),
            ({"dir": d, "scope": "two words"}, "\"scope\" 'two words' is not a valid scope"),
        ]
        for cfg, message in cases:
            with self.subTest(cfg=cfg):
                await asyncio.to_thread(self.refuses, cfg, message)


if __name__ == "__main__":
    main()
