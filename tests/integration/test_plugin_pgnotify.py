#!/usr/bin/python3
"""The pgnotify plugin (plugins/pgnotify): PostgreSQL NOTIFYs become events.

Each test runs a throwaway PostgreSQL cluster (initdb into a temporary
directory, as the `postgres` user when run as root, on 127.0.0.1 and a free
port), starts the server with `--plugin pgnotify.so:CONFIG`, subscribes
WebSocket clients and sends NOTIFYs with psql. Shown: JSON and plain-text
payloads as data, several channels, scope_from_payload, the order of 200
NOTIFYs of one transaction and of one psql session, a reconnect after
PostgreSQL restarts (the server healthy meanwhile), a server started while
the database is down, and bad configurations that stop the start-up.

The plugin is SC_PLUGIN_DIR/pgnotify.so (ctest sets SC_PLUGIN_DIR). The
PostgreSQL binaries are required: scripts/deps.sh --test installs them.
"""

import asyncio
import glob
import itertools
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (CONFIG, HOST, T, ScopecastTestCase, free_port,  # noqa: E402
                     http_request, main, no_server)

_probe_ids = itertools.count(1)


# --------------------------------------------------------------------------
# PostgreSQL

def pg_bindir():
    """The newest /usr/lib/postgresql/N/bin with initdb and pg_ctl, or the
    directory of initdb on PATH; fails (not skips) when there is none."""
    cands = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                   key=lambda d: int(re.sub(r"\D", "", d.split("/")[-2]) or 0), reverse=True)
    for d in cands:
        if all(os.access(os.path.join(d, b), os.X_OK) for b in ("initdb", "pg_ctl", "postgres")):
            return d
    p = shutil.which("initdb")
    if p and shutil.which("pg_ctl"):
        return os.path.dirname(os.path.realpath(p))
    raise AssertionError("the PostgreSQL server binaries (initdb, pg_ctl, postgres) are not installed "
                         "(looked in /usr/lib/postgresql/*/bin and PATH): scripts/deps.sh --test installs them")


def psql_bin():
    p = shutil.which("psql")
    if p:
        return p
    p = os.path.join(pg_bindir(), "psql")
    if os.access(p, os.X_OK):
        return p
    raise AssertionError("psql is not installed: scripts/deps.sh --test installs it (postgresql-client)")


def pg_env():
    """The environment without PG* variables (they would redirect libpq)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def sql_literal(s):
    return "'" + s.replace("'", "''") + "'"


def sql_ident(s):
    return '"' + s.replace('"', '""') + '"'


class PgCluster:
    """A throwaway PostgreSQL cluster on 127.0.0.1:<port> (trust auth, user
    postgres). PostgreSQL refuses to run as root: as root, the directory
    belongs to `postgres` and every server command runs as that user."""

    def __init__(self):
        self.bindir = pg_bindir()
        self.psql = psql_bin()
        self.as_root = os.geteuid() == 0
        self.dir = tempfile.mkdtemp(prefix="scopecast-pg-")
        if self.as_root:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.dir, ignore_errors=True)
                raise AssertionError("running as root, but there is no `postgres` user to run PostgreSQL as "
                                     "(the postgresql package creates it: scripts/deps.sh --test)")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.data = os.path.join(self.dir, "data")
        self.logfile = os.path.join(self.dir, "postgres.log")
        self.port = None
        self.running = False

    def _run(self, *args, timeout=90, check=True):
        cmd = (["runuser", "-u", "postgres", "--"] if self.as_root else []) + [str(a) for a in args]
        p = subprocess.run(cmd, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, env=pg_env(), timeout=timeout)
        out = p.stdout.decode("utf-8", "replace")
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited with {p.returncode}:\n{out}\n"
                                 f"--- postgres log ---\n{self.log_tail()}")
        return p.returncode, out

    def initdb(self):
        self._run(os.path.join(self.bindir, "initdb"), "-D", self.data, "-A", "trust", "-U", "postgres",
                  "-E", "UTF8", "--locale=C", "--no-sync")
        return self

    def start(self):
        """Starts the cluster (waiting until it accepts connections); on the
        same port as before when it ran already."""
        first = self.port is None
        for attempt in range(3 if first else 1):
            if first:
                self.port = free_port()
            opts = (f"-p {self.port} -k {self.dir} -c listen_addresses={HOST} -c fsync=off "
                    f"-c full_page_writes=off -c synchronous_commit=off")
            rc, out = self._run(os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-l", self.logfile,
                                "-o", opts, "-w", "-t", "60", "start", check=False)
            if rc == 0:
                self.running = True
                return self
            if not first or "in use" not in self.log_tail(20):
                break
        raise AssertionError(f"pg_ctl start (port {self.port}) failed:\n{out}\n"
                             f"--- postgres log ---\n{self.log_tail()}")

    def stop(self):
        if self.running:
            self._run(os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-m", "fast", "-w", "-t", "60",
                      "stop", check=False)
            self.running = False

    def destroy(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, n=40):
        try:
            with open(self.logfile, encoding="utf-8", errors="replace") as f:
                return "\n".join(f.read().splitlines()[-n:])
        except OSError:
            return "(no postgres log)"

    @property
    def conninfo(self):
        return f"hostaddr={HOST} port={self.port} dbname=postgres user=postgres"

    # -- the client side ----------------------------------------------------
    def sql(self, sql=None, stdin=None, check=True):
        """Runs psql (as the current user: trust auth) with -c `sql` or the
        script `stdin`; returns (exit code, output)."""
        cmd = [self.psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-o", os.devnull, "-h", HOST,
               "-p", str(self.port), "-U", "postgres", "-d", "postgres"]
        if sql is not None:
            cmd += ["-c", sql]
        p = subprocess.run(cmd, input=(stdin or "").encode(), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, env=pg_env(), timeout=60)
        out = p.stdout.decode("utf-8", "replace")
        if check and p.returncode != 0:
            raise AssertionError(f"psql {sql or '(script)'!r} exited with {p.returncode}: {out}")
        return p.returncode, out

    async def notify(self, channel, payload, check=True):
        """One NOTIFY (its own transaction)."""
        return await asyncio.to_thread(self.sql, f"NOTIFY {sql_ident(channel)}, {sql_literal(payload)}",
                                       None, check)

    async def run(self, sql=None, stdin=None, check=True):
        return await asyncio.to_thread(self.sql, sql, stdin, check)


# --------------------------------------------------------------------------
# The server side

def plugin_path():
    d = os.environ.get("SC_PLUGIN_DIR") or os.path.join(os.path.dirname(os.path.dirname(CONFIG.server)),
                                                        "plugins")
    p = os.path.join(d, "pgnotify.so")
    if not os.path.isfile(p):
        raise AssertionError(f"{p} not found: build the target sc_plugin_pgnotify and set SC_PLUGIN_DIR "
                             f"to the build's plugins directory")
    return p


def plugin_arg(config):
    return f"{plugin_path()}:{json.dumps(config)}"


def run_server(*args, timeout=20.0):
    """harness.run_server with a free port and the web root."""
    return harness.run_server("--port", "0", "--web-root", CONFIG.web_root, *args,
                              timeout=timeout)


class PgnotifyCase(ScopecastTestCase):
    TEST_TIMEOUT = 90.0

    def start_feed(self, pg, **config):
        cfg = {"conninfo": pg.conninfo}
        cfg.update(config)
        return self.start_server("--plugin", plugin_arg(cfg))

    def log_lines(self, srv, pattern):
        with open(srv.log_path, encoding="utf-8", errors="replace") as f:
            return [ln for ln in f if re.search(pattern, ln)]

    async def wait_log(self, srv, pattern, n=1, timeout=None):
        timeout = timeout or T()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.log_lines(srv, pattern)
            if len(lines) >= n:
                return lines
            await asyncio.sleep(0.05)
        self.fail(f"no {n} server log line(s) matching {pattern!r} within {timeout:.0f} s\n{srv.log_tail(40)}")

    async def until_listening(self, pg, client, channel, scope, routed=False, timeout=None, srv=None):
        """NOTIFYs probes on `channel` (every 0.5 s) until one reaches
        `client` as an event of `scope`, which proves the plugin LISTENs;
        the probes that arrived are then dropped from the client's inbox.
        Returns the number of probes sent."""
        timeout = timeout or T(3)
        deadline = time.monotonic() + timeout
        sent = 0

        def is_probe(m):
            return (m.get("op") == "event" and m.get("scope") == scope and isinstance(m.get("data"), dict)
                    and "probe" in m["data"])
        while True:
            tag = f"probe-{next(_probe_ids)}"
            payload = {"scope": scope, "data": {"probe": tag}} if routed else {"probe": tag}
            await pg.notify(channel, json.dumps(payload), check=False)  # fails while PostgreSQL is down
            sent += 1
            try:
                await client.wait("event", timeout=0.5, pred=lambda m: m.get("scope") == scope
                                  and m.get("data") == {"probe": tag})
                break
            except AssertionError:
                if time.monotonic() >= deadline:
                    raise AssertionError(f"no NOTIFY on {channel!r} reached a subscriber of {scope!r} within "
                                         f"{timeout:.0f} s ({sent} probes sent)\n--- server log ---\n"
                                         f"{(srv or self.srv).log_tail(40)}\n--- postgres log ---\n"
                                         f"{pg.log_tail(20)}")
        client.take(pred=is_probe)
        return sent

    async def events(self, client, scope, n, timeout=None, partial=False):
        """The next `n` pushes of `scope` (must all be events). partial: if
        fewer come, return those (for a better message than a timeout)."""
        out = []
        for _ in range(n):
            try:
                m = await client.push(scope, timeout=timeout)
            except AssertionError:
                if partial:
                    return out
                raise
            self.assertEqual(m.get("op"), "event", f"push #{len(out) + 1} of {scope!r}: {m!r}")
            out.append(m)
        return out

    def assertEvent(self, m, scope, data, paths=()):
        self.assertSub(m, {"op": "event", "scope": scope, "paths": list(paths), "origin": None})
        if data is ...:
            self.assertNotIn("data", m, m)
        else:
            self.assertIn("data", m, m)
            self.assertEqual(m["data"], data, m)
            self.assertEqual(type(m["data"]), type(data), m)


# --------------------------------------------------------------------------
# One cluster for the class: delivery, channels, payloads, order

class Feed(PgnotifyCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pg = PgCluster()
        cls.addClassCleanup(cls.pg.destroy)
        cls.pg.initdb().start()

    def setUp(self):
        # every server here is started by its test, with its own config
        self.servers = []
        self.clients = []
        self.srv = None

    async def test_json_and_text_payloads_reach_the_subscribers_of_the_channels_scope(self):
        pg = self.pg
        self.srv = self.start_feed(pg, channels=["orders", "users"], scope="db:{channel}")
        a = await self.client(name="orders")
        b = await self.client(name="users")
        await a.subscribe("db:orders")
        await b.subscribe("db:users")
        await self.until_listening(pg, a, "orders", "db:orders")
        await self.until_listening(pg, b, "users", "db:users")
        await self.wait_log(self.srv, r"listening on 2 channel\(s\) at 127\.0\.0\.1:%d" % pg.port)

        cases = [
            ('{"id": 7, "items": [1, 2.5], "name": "\u00f6", "ok": true, "none": null}',
             {"id": 7, "items": [1, 2.5], "name": "\u00f6", "ok": True, "none": None}),
            ("hello world", "hello world"),
            ('it\'s "quoted" \\ \u00fcn\u00efc\u00f8de \t tab\nline', 'it\'s "quoted" \\ \u00fcn\u00efc\u00f8de \t tab\nline'),
            ("42", 42),
            ("  [1, {\"a\": []}]  ", [1, {"a": []}]),
            ('"a json string"', "a json string"),
            ("", ""),
            ("[1, 2", "[1, 2"),               # not JSON: text
            ("NaN", "NaN"),                   # not JSON (json-c would accept it)
            ("{'single': 1}", "{'single': 1}"),
            ('{"a": 1} trailing', '{"a": 1} trailing'),
        ]
        # one psql session, one transaction per NOTIFY
        script = "".join(f"NOTIFY orders, {sql_literal(p)};\n" for p, _ in cases)
        script += f"NOTIFY users, {sql_literal(json.dumps({'user': 'ana'}))};\n"
        await pg.run(stdin=script)
        got = await self.events(a, "db:orders", len(cases), partial=True)
        self.assertEqual([m.get("data", ...) for m in got], [d for _, d in cases])
        for (payload, data), m in zip(cases, got):
            self.assertEvent(m, "db:orders", data)
        seqs = [m["seq"] for m in got]
        self.assertEqual(seqs, list(range(seqs[0], seqs[0] + len(cases))), "one event per NOTIFY, in order")
        m = await b.push("db:users")
        self.assertEvent(m, "db:users", {"user": "ana"})
        # nothing else reached either scope (each only its own channel)
        await self.marker("db:orders", a)
        await self.marker("db:users", b)
        self.assertEqual(a.take(pred=lambda m: m.get("scope") == "db:users"), [])

    async def test_several_channels_with_the_default_scope(self):
        pg = self.pg
        # no "scope": the scope is the channel's name; a quoted mixed-case
        # channel is used exactly as configured
        self.srv = self.start_feed(pg, channels=["orders", "users", "Audit.Log"])
        a = await self.client(name="a")
        b = await self.client(name="b")
        await a.subscribe("orders")
        await a.subscribe("users")
        await b.subscribe("Audit.Log")
        await self.until_listening(pg, a, "orders", "orders")
        # one transaction: delivered at its commit, in order
        await pg.run("BEGIN; NOTIFY orders, 'o1'; NOTIFY users, 'u1'; NOTIFY \"Audit.Log\", '{\"x\": 1}'; "
                     "NOTIFY orders, 'o2'; NOTIFY elsewhere, 'not ours'; COMMIT;")
        o = await self.events(a, "orders", 2)
        self.assertEqual([m["data"] for m in o], ["o1", "o2"])
        self.assertEqual(o[1]["seq"], o[0]["seq"] + 1)
        self.assertEvent((await self.events(a, "users", 1))[0], "users", "u1")
        self.assertEvent((await self.events(b, "Audit.Log", 1))[0], "Audit.Log", {"x": 1})
        for scope, c in (("orders", a), ("users", a), ("Audit.Log", b)):
            await self.marker(scope, c)
        self.assertEqual(b.take(pred=lambda m: m.get("scope") in ("orders", "users")), [])

    async def test_scope_from_payload(self):
        pg = self.pg
        self.srv = self.start_feed(pg, channels=["changes"], scope_from_payload=True)
        a = await self.client(name="doc1")
        b = await self.client(name="doc2")
        await a.subscribe("doc:1")
        await b.subscribe("doc:2")
        await self.until_listening(pg, a, "changes", "doc:1", routed=True)

        good = [
            ({"scope": "doc:1", "data": {"title": "x"}}, "doc:1", {"title": "x"}, []),
            ({"scope": "doc:2", "a": 1, "b": [2, {"c": None}]}, "doc:2", {"a": 1, "b": [2, {"c": None}]}, []),
            ({"scope": "doc:1", "paths": ["title", "body"], "data": 5}, "doc:1", 5, ["title", "body"]),
            ({"scope": "doc:2"}, "doc:2", {}, []),
            ({"scope": "doc:1", "data": None}, "doc:1", None, []),
        ]
        bad = [
            "not json",
            "[1, 2]",
            json.dumps({"data": 1}),
            json.dumps({"scope": 5, "data": 1}),
            json.dumps({"scope": "doc:1 with spaces", "data": 1}),
            json.dumps({"scope": "", "data": 1}),
            json.dumps({"scope": "d" * 201, "data": 1}),
            json.dumps({"scope": "doc:1", "paths": "title", "data": 1}),
        ]
        script = "".join(f"NOTIFY changes, {sql_literal(p)};\n" for p in bad)
        script += "".join(f"NOTIFY changes, {sql_literal(json.dumps(p))};\n" for p, _, _, _ in good)
        await pg.run(stdin=script)
        for payload, scope, data, paths in good:
            c = a if scope == "doc:1" else b
            m = await c.push(scope)
            if paths:  # a set (docs/PROTOCOL.md): the server may reorder
                self.assertEqual(sorted(m.get("paths", [])), sorted(paths), m)
                paths = m["paths"]
            self.assertEvent(m, scope, data, paths)
        # the bad ones made no event (the good ones after them came first)
        # and a warning each
        await self.marker("doc:1", a)
        await self.marker("doc:2", b)
        lines = await self.wait_log(self.srv, r"skipped a NOTIFY", n=len(bad))
        self.assertEqual(len(lines), len(bad), "".join(lines))
        self.assertTrue(any('no "scope" string' in ln for ln in lines), "".join(lines))
        self.assertTrue(any("invalid scope" in ln for ln in lines), "".join(lines))
        self.assertTrue(any("not a JSON object" in ln for ln in lines), "".join(lines))
        self.assertTrue(self.srv.alive())

    async def test_200_notifies_arrive_in_order(self):
        pg = self.pg
        self.srv = self.start_feed(pg, channels=["orders"], scope="db:{channel}")
        c = await self.client()
        await c.subscribe("db:orders")
        await self.until_listening(pg, c, "orders", "db:orders")

        # 200 NOTIFYs in one transaction (one statement)
        t0 = time.monotonic()
        await pg.run("SELECT pg_notify('orders', json_build_object('n', i)::text) "
                     "FROM generate_series(1, 200) AS i")
        got = await self.events(c, "db:orders", 200)
        self.assertEqual([m["data"] for m in got], [{"n": i} for i in range(1, 201)])
        self.assertEqual([m["seq"] for m in got], list(range(got[0]["seq"], got[0]["seq"] + 200)))
        t1 = time.monotonic()

        # 200 transactions in one psql session
        await pg.run(stdin="".join(f"NOTIFY orders, 'text {i}';\n" for i in range(1, 201)))
        got2 = await self.events(c, "db:orders", 200)
        self.assertEqual([m["data"] for m in got2], [f"text {i}" for i in range(1, 201)])
        self.assertEqual(got2[0]["seq"], got[-1]["seq"] + 1)
        self.assertEqual(c.take(op="dropped"), [])
        await self.marker("db:orders", c)
        print(f"\n  200 in one transaction: {t1 - t0:.2f} s; 200 transactions: {time.monotonic() - t1:.2f} s",
              file=sys.stderr)


# --------------------------------------------------------------------------
# A cluster per test: restarts, a database that is down at start

class Reconnect(PgnotifyCase):
    def setUp(self):
        self.servers = []
        self.clients = []
        self.srv = None
        self.pg = PgCluster()
        self.addCleanup(self.pg.destroy)
        self.pg.initdb()

    async def healthy(self):
        res = await asyncio.to_thread(http_request, self.srv.port, "GET", "/healthz", None, None, 5.0)
        self.assertEqual(res.status, 200, f"GET /healthz -> {res!r}")
        self.assertTrue(self.srv.alive(), self.srv.log_tail(30))

    async def test_reconnects_after_postgresql_restarts(self):
        pg = await asyncio.to_thread(self.pg.start)
        self.srv = self.start_feed(pg, channels=["orders"], scope="db:{channel}")
        c = await self.client()
        await c.subscribe("db:orders")
        await self.until_listening(pg, c, "orders", "db:orders")
        await pg.notify("orders", "before")
        self.assertEvent(await c.push("db:orders"), "db:orders", "before")

        for round_ in (1, 2):
            await asyncio.to_thread(pg.stop)
            await self.wait_log(self.srv, r"connection to .* lost", n=round_)
            # the server does not care: health, WebSocket and HTTP emits go on
            for _ in range(3):
                await self.healthy()
                await self.marker("db:orders", c)
                await asyncio.sleep(0.3)
            rc, _ = await pg.notify("orders", "while down", check=False)
            self.assertNotEqual(rc, 0, "psql reached a stopped PostgreSQL")
            t0 = time.monotonic()
            await asyncio.to_thread(pg.start)  # the same port
            probes = await self.until_listening(pg, c, "orders", "db:orders", timeout=T(3))
            took = time.monotonic() - t0
            await self.healthy()
            # and it keeps delivering, in order
            await pg.run(stdin="NOTIFY orders, 'after 1';\nNOTIFY orders, '{\"after\": 2}';\n")
            got = await self.events(c, "db:orders", 2)
            self.assertEqual([m["data"] for m in got], ["after 1", {"after": 2}])
            await self.marker("db:orders", c)
            await self.wait_log(self.srv, r"reconnected to 127\.0\.0\.1:%d" % pg.port, n=round_)
            print(f"\n  restart {round_}: delivering again {took:.2f} s after pg_ctl start ({probes} probes)",
                  file=sys.stderr)
        self.assertEqual(c.take(op="dropped"), [])
        await self.healthy()

    async def test_server_starts_while_the_database_is_down_and_delivers_once_it_is_up(self):
        pg = self.pg
        pg.port = free_port()  # nothing listens there yet
        self.srv = self.start_feed(pg, channels=["orders"], scope="db:{channel}", reconnect_max_ms=1000)
        c = await self.client()
        await c.subscribe("db:orders")
        await self.wait_log(self.srv, r"cannot connect to .*attempt 3", timeout=T(2))
        for _ in range(3):
            await self.healthy()
            await self.marker("db:orders", c)
            await asyncio.sleep(0.3)
        t0 = time.monotonic()
        await asyncio.to_thread(pg.start)
        probes = await self.until_listening(pg, c, "orders", "db:orders", timeout=T(3))
        took = time.monotonic() - t0
        await pg.notify("orders", '{"first": true}')
        self.assertEvent(await c.push("db:orders"), "db:orders", {"first": True})
        await self.healthy()
        self.assertEqual(self.log_lines(self.srv, r"reconnected to"), [],
                         "the first connection is not a reconnect")
        await self.wait_log(self.srv, r"listening on 1 channel\(s\) at 127\.0\.0\.1:%d" % pg.port)
        print(f"\n  delivering {took:.2f} s after pg_ctl start ({probes} probes)", file=sys.stderr)


# --------------------------------------------------------------------------
# Bad configurations stop the start-up

class BadConfig(PgnotifyCase):
    @no_server
    async def test_bad_config_stops_the_server_with_the_plugins_message(self):
        ci = f"hostaddr={HOST} port={free_port()} dbname=postgres user=postgres"
        cases = [
            ({"channels": ["a"]}, '"conninfo" is required'),
            ({"conninfo": ci, "channels": []}, '"channels" is required'),
            ({"conninfo": ci}, '"channels" is required'),
            ({"conninfo": ci, "channels": ["a"], "colour": "blue"}, 'unknown key "colour"'),
            ({"conninfo": ci, "channels": ["a", 5]}, '"channels"[1] is not a string'),
            ({"conninfo": ci, "channels": ["a", "a"]}, 'channel "a" given twice'),
            ({"conninfo": ci, "channels": ["x" * 64]}, "must be 1 to 63 bytes"),
            ({"conninfo": "hostaddr=127.0.0.1 port", "channels": ["a"]}, '"conninfo" is invalid'),
            ({"conninfo": ci, "channels": ["a"], "scope": "db {channel}"}, "is not a valid scope"),
            ({"conninfo": ci, "channels": ["a"], "scope": "s", "scope_from_payload": True},
             '"scope" cannot be combined'),
            ({"conninfo": ci, "channels": ["a"], "reconnect_max_ms": "5s"}, '"reconnect_max_ms" must be'),
            ({"conninfo": ci, "channels": ["a"], "scope_from_payload": 1}, '"scope_from_payload" must be'),
        ]
        for config, message in cases:
            with self.subTest(config=config):
                rc, out = await asyncio.to_thread(run_server, "--plugin", plugin_arg(config))
                self.assertNotEqual(rc, 0, f"server started with {config!r}:\n{out}")
                self.assertIn(message, out)
        # the same plugin with a good config (and no database) starts
        srv = self.start_server("--plugin", plugin_arg({"conninfo": ci, "channels": ["a"]}))
        res = await asyncio.to_thread(http_request, srv.port, "GET", "/healthz")
        self.assertEqual(res.status, 200)


if __name__ == "__main__":
    main()
