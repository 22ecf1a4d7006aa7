#!/usr/bin/python3
"""The example plugin authz (plugins/authz/authz.c) loaded into the real server
with --plugin: `user:<id>[:...]` scopes only for user <id>, `admin:*` only with
the admin claim (JSON true), other scopes as the server's own rules say; the
same for subscribe, presence and client emit; a denial is `forbidden` with the
plugin's reason and the connection goes on; a bad config stops start-up.

SC_PLUGIN_DIR (set by ctest) is where the build put authz.so."""

import asyncio
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import run_server  # noqa: E402
from harness import (CONFIG, JWT_SECRET, ScopecastTestCase, main, no_server,  # noqa: E402
                     server_args, token)

PLUGIN = os.path.join(os.environ.get("SC_PLUGIN_DIR", ""), "authz.so")
JWT = ("--jwt-secret", JWT_SECRET)

USER_REASON = "user:bob is only for user bob"
ADMIN_REASON = "admin:* needs the admin claim"


def plugin(config=None):
    """The --plugin argument: the path, or PATH:CONFIG_JSON (one argv element)."""
    if config is None:
        return PLUGIN
    return PLUGIN + ":" + (config if isinstance(config, str) else json.dumps(config))



class AuthzCase(ScopecastTestCase):
    async def assertForbidden(self, c, op, scope, reason, **fields):
        """`op` on `scope` is answered `forbidden` (with the request's id) and
        the error's message carries the plugin's reason."""
        r = await c.call(op, scope=scope, **fields)
        self.assertError(r, "forbidden", id=r.get("id"))
        self.assertIn(reason, r["message"], f"{c.name}: {op} {scope!r}: {r!r}")
        self.assertNotIn("presence", r, "a refused request shows nothing of the scope")
        return r

    async def assertAllowed(self, c, op, scope, **fields):
        reply = {"subscribe": "subscribed", "presence": "presence", "emit": "emitted"}[op]
        r = await c.call(op, scope=scope, **fields)
        self.assertEqual(r.get("op"), reply, f"{c.name}: {op} {scope!r} should be allowed: {r!r}")
        return r


class UserScopes(AuthzCase):
    SERVER_ARGS = JWT + ("--plugin", plugin())

    async def test_subscribe_only_to_your_own_user_scopes(self):
        alice = await self.client(token=token("alice"), name="alice")
        bob = await self.client(token=token("bob"), name="bob")
        for s in ("user:alice", "user:alice:inbox"):
            await self.assertAllowed(alice, "subscribe", s)
        await self.assertForbidden(alice, "subscribe", "user:bob", USER_REASON)
        await self.assertForbidden(alice, "subscribe", "user:bob:inbox", USER_REASON)
        # the id is compared whole, not as a prefix, both ways
        await self.assertForbidden(alice, "subscribe", "user:alicex", "user:alicex is only for user alicex")
        await self.assertForbidden(bob, "subscribe", "user:bo", "user:bo is only for user bo")
        await self.assertForbidden(alice, "subscribe", "user:", "user: must be followed by a user id")
        await self.assertAllowed(bob, "subscribe", "user:bob")
        # alice never gets bob's events; bob does
        seq = await self.srv.emit("user:bob", data={"for": "bob"})
        ev = await bob.push("user:bob")
        self.assertSub(ev, {"op": "event", "seq": seq, "data": {"for": "bob"}})
        await self.marker("user:alice", alice)
        self.assertEqual([m for m in alice.log if m.get("scope") == "user:bob" and m.get("op") != "error"], [])

    async def test_presence_of_another_users_scope_is_refused(self):
        alice = await self.client(token=token("alice"), name="alice")
        bob = await self.client(token=token("bob"), name="bob")
        await bob.subscribe("user:bob", meta={"email": "bob@example.com"})
        r = await self.assertForbidden(alice, "presence", "user:bob", USER_REASON)
        self.assertNotIn("bob@example.com", json.dumps(r))
        await self.assertForbidden(alice, "presence", "user:bob:inbox", USER_REASON)
        r = await self.assertAllowed(bob, "presence", "user:bob")
        self.assertEqual([c["user"] for c in r["presence"]], ["bob"])
        await self.assertAllowed(alice, "presence", "user:alice")

    async def test_emit_into_another_users_scope_is_refused(self):
        alice = await self.client(token=token("alice", emit=True), name="alice")
        bob = await self.client(token=token("bob"), name="bob")
        await bob.subscribe("user:bob")
        await self.assertForbidden(alice, "emit", "user:bob", USER_REASON, data={"spoof": 1})
        await self.assertForbidden(alice, "emit", "user:bob:inbox", USER_REASON, data={"spoof": 2})
        # nothing reached bob, and the refused emit used no seq
        self.assertEqual(await self.marker("user:bob", bob), 1)
        # alice may emit into her own scope and into ordinary ones
        await alice.subscribe("user:alice", echo=True)
        r = await self.assertAllowed(alice, "emit", "user:alice", data={"mine": True})
        ev = await alice.push("user:alice")
        self.assertSub(ev, {"op": "event", "seq": r["seq"], "data": {"mine": True}, "origin": alice.session})
        await self.assertAllowed(alice, "emit", "doc:1", data=1)

    async def test_a_denial_keeps_the_connection_working(self):
        alice = await self.client(token=token("alice", emit=True), name="alice")
        await self.assertForbidden(alice, "subscribe", "user:bob", USER_REASON)
        await self.assertForbidden(alice, "presence", "user:bob", USER_REASON)
        await self.assertForbidden(alice, "emit", "user:bob", USER_REASON, data=0)
        await self.assertForbidden(alice, "subscribe", "admin:dash", ADMIN_REASON)
        self.assertEqual((await alice.call("ping"))["op"], "pong")
        # later allowed requests succeed and events flow
        s = await self.assertAllowed(alice, "subscribe", "doc:after")
        self.assertEqual([c["session"] for c in s["presence"]], [alice.session])
        seq = await self.srv.emit("doc:after", data={"n": 1})
        self.assertSub(await alice.push("doc:after"), {"op": "event", "seq": seq, "data": {"n": 1}})
        await self.assertAllowed(alice, "subscribe", "user:alice")
        seq = await self.srv.emit("user:alice", data={"n": 2})
        self.assertSub(await alice.push("user:alice"), {"op": "event", "seq": seq, "data": {"n": 2}})
        # the denied subscribe to user:bob left no subscription behind
        await self.srv.emit("user:bob", data="not for alice")
        await self.marker("doc:after", alice)
        self.assertFalse([m for m in alice.log if m.get("op") == "event" and m.get("scope") == "user:bob"])
        self.assertIsNone(alice.closed)

    async def test_the_servers_own_rules_still_apply(self):
        # the plugin narrows the token's scopes claim, it never widens it
        alice = await self.client(token=token("alice", scopes=["doc:*"]), name="alice")
        r = await alice.call("subscribe", scope="user:alice")
        self.assertError(r, "forbidden", id=r.get("id"))
        await self.assertAllowed(alice, "subscribe", "doc:1")
        # and emitting still needs the emit claim, even into one's own scope
        r = await alice.call("emit", scope="doc:1", data=1)
        self.assertError(r, "forbidden", id=r.get("id"))

    @server_args("--allow-anonymous", "--anonymous-scopes", "*", "--client-emit")
    async def test_anonymous_connections_have_no_user_scopes(self):
        anon = await self.client(name="anon")
        self.assertIsNone(anon.welcome["user"])
        await self.assertForbidden(anon, "subscribe", "user:alice", "user:alice is only for user alice")
        await self.assertForbidden(anon, "presence", "user:alice", "user:alice is only for user alice")
        await self.assertForbidden(anon, "emit", "user:alice", "user:alice is only for user alice", data=1)
        await self.assertForbidden(anon, "subscribe", "admin:dash", ADMIN_REASON)
        await self.assertAllowed(anon, "subscribe", "doc:1")


class AdminScopes(AuthzCase):
    SERVER_ARGS = JWT + ("--plugin", plugin({"admin_claim": "admin"}))

    async def test_admin_scopes_need_the_claim_as_json_true(self):
        for name, claims in (("none", {}), ("false", {"admin": False}), ("string", {"admin": "true"}),
                             ("one", {"admin": 1}), ("null", {"admin": None}), ("list", {"admin": ["admin"]}),
                             ("other", {"administrator": True})):
            c = await self.client(token=token(name, **claims), name=name)
            await self.assertForbidden(c, "subscribe", "admin:dash", ADMIN_REASON)
            await self.assertForbidden(c, "subscribe", "admin:", ADMIN_REASON)
            await self.assertForbidden(c, "presence", "admin:dash", ADMIN_REASON)
        root = await self.client(token=token("root", admin=True), name="root")
        s = await self.assertAllowed(root, "subscribe", "admin:dash")
        self.assertEqual([c["user"] for c in s["presence"]], ["root"])
        await self.assertAllowed(root, "presence", "admin:dash")
        await self.assertAllowed(root, "subscribe", "admin:other:deep")
        seq = await self.srv.emit("admin:dash", data={"cpu": 3})
        self.assertSub(await root.push("admin:dash"), {"op": "event", "seq": seq, "data": {"cpu": 3}})

    async def test_emit_into_admin_scopes_needs_the_claim(self):
        root = await self.client(token=token("root", admin=True), name="root")
        await root.subscribe("admin:dash")
        alice = await self.client(token=token("alice", emit=True), name="alice")
        await self.assertForbidden(alice, "emit", "admin:dash", ADMIN_REASON, data={"fake": 1})
        fake = await self.client(token=token("fake", emit=True, admin="true"), name="fake")
        await self.assertForbidden(fake, "emit", "admin:dash", ADMIN_REASON, data={"fake": 2})
        self.assertEqual(await self.marker("admin:dash", root), 1, "refused emits use no seq")
        ops = await self.client(token=token("ops", emit=True, admin=True), name="ops")
        r = await self.assertAllowed(ops, "emit", "admin:dash", data={"real": 1})
        ev = await root.push("admin:dash")
        self.assertSub(ev, {"op": "event", "seq": r["seq"], "origin": ops.session, "data": {"real": 1}})

    async def test_other_scopes_are_unaffected(self):
        alice = await self.client(token=token("alice", emit=True), name="alice")
        # only the exact prefixes are special (scopes are case-sensitive)
        for s in ("doc:1", "room:lobby", "adminx", "Admin:dash", "room:admin:1", "users:bob", "User:bob",
                  "x:user:bob"):
            await self.assertAllowed(alice, "subscribe", s)
            await self.assertAllowed(alice, "presence", s)
            await self.assertAllowed(alice, "emit", s, data=s)
        # the user rule holds with a config too
        await self.assertForbidden(alice, "subscribe", "user:bob", USER_REASON)
        # an admin is not a super-user for other users' scopes
        root = await self.client(token=token("root", admin=True, emit=True), name="root")
        await self.assertForbidden(root, "subscribe", "user:bob", USER_REASON)
        await self.assertForbidden(root, "emit", "user:bob", USER_REASON, data=1)


class ConfiguredNames(AuthzCase):
    """Every key set: other prefixes, a role list as the admin claim."""
    SERVER_ARGS = JWT + ("--plugin", plugin({"user_prefix": "u.", "admin_prefix": "ops/",
                                             "admin_claim": "roles", "admin_role": "admin"}))

    async def test_configured_prefixes_and_role_list(self):
        reason = 'ops/* needs the roles claim (true, or a list containing "admin")'
        for name, roles in (("r1", ["user", "admin"]), ("r2", True)):
            c = await self.client(token=token(name, roles=roles), name=name)
            await self.assertAllowed(c, "subscribe", "ops/dash")
        for name, claims in (("n1", {"roles": ["user"]}), ("n2", {"roles": "admin"}), ("n3", {"admin": True}),
                             ("n4", {"roles": ["Admin", "admin "]}), ("n5", {})):
            c = await self.client(token=token(name, **claims), name=name)
            await self.assertForbidden(c, "subscribe", "ops/dash", reason)
        alice = await self.client(token=token("alice"), name="alice")
        await self.assertAllowed(alice, "subscribe", "u.alice")
        await self.assertAllowed(alice, "subscribe", "u.alice:x")
        await self.assertForbidden(alice, "subscribe", "u.bob", "u.bob is only for user bob")
        # the default prefixes are ordinary scopes now
        await self.assertAllowed(alice, "subscribe", "user:bob")
        await self.assertAllowed(alice, "subscribe", "admin:dash")


class TwoThreads(AuthzCase):
    """Hooks of connections on different service threads run at once."""
    SERVER_ARGS = JWT + ("--threads", "2", "--plugin", plugin())

    async def test_many_connections_at_once(self):
        n = 24
        clients = [await self.client(token=token(f"u{i}", admin=(i % 2 == 0)), name=f"u{i}") for i in range(n)]

        async def one(i, c):
            other = f"u{(i + 1) % n}"
            for k in range(10):
                await self.assertAllowed(c, "subscribe", f"user:u{i}:{k}")
                await self.assertForbidden(c, "subscribe", f"user:{other}:{k}",
                                           f"user:{other} is only for user {other}")
                if i % 2 == 0:
                    await self.assertAllowed(c, "presence", "admin:dash")
                else:
                    await self.assertForbidden(c, "presence", "admin:dash", ADMIN_REASON)

        await asyncio.gather(*(one(i, c) for i, c in enumerate(clients)))
        for i, c in enumerate(clients):
            seq = await self.srv.emit(f"user:u{i}:9", data=i)
            self.assertSub(await c.push(f"user:u{i}:9"), {"op": "event", "seq": seq, "data": i})


class BadConfig(ScopecastTestCase):
    """A config init refuses stops start-up: non-zero exit and the reason."""

    @no_server
    async def test_bad_config_stops_start_up(self):
        cases = (
            ({"admin_claim": "admin", "colour": "red"},
             'unknown key "colour" (known: user_prefix, admin_prefix, admin_claim, admin_role)'),
            ({"admin_claim": 1}, '"admin_claim" must be a string, not a number'),
            ({"user_prefix": True}, '"user_prefix" must be a string, not a boolean'),
            ({"admin_prefix": None}, '"admin_prefix" must be a string, not null'),
            ({"admin_role": ["admin"]}, '"admin_role" must be a string, not an array'),
            ({"user_prefix": ""}, '"user_prefix" must be 1-200 bytes'),
            ({"admin_prefix": "my admin:"}, '"admin_prefix" must be printable ASCII without spaces'),
            ({"admin_claim": ""}, '"admin_claim" must be 1-200 bytes'),
        )
        # (a config that is not a JSON object is the host's to refuse: authz
        # never sees one)
        for config, message in cases:
            with self.subTest(config=config):
                rc, out = await asyncio.to_thread(run_server, "--port", "0", "--web-root", CONFIG.web_root,
                                                  *JWT, "--plugin", plugin(config))
                self.assertGreater(rc, 0, f"exit code {rc} (expected a non-zero exit, not a signal)\n{out}")
                lines = [ln for ln in out.splitlines() if message in ln]
                self.assertTrue(lines, f"no line with {message!r} in the output:\n{out}")
                self.assertIn("authz", lines[0], "the message names the plugin")

    @no_server
    async def test_every_key_at_its_default_starts(self):
        srv = self.start_server(*JWT, "--plugin", plugin({"user_prefix": "user:", "admin_prefix": "admin:",
                                                          "admin_claim": "admin", "admin_role": None}),
                                name="defaults")
        c = await self.client(srv, token=token("alice"), name="alice")
        r = await c.call("subscribe", scope="user:bob")
        self.assertError(r, "forbidden", id=r.get("id"))
        self.assertIn(USER_REASON, r["message"])


if __name__ == "__main__":
    if not os.path.isfile(PLUGIN):
        print(f"{PLUGIN!r} not found: set SC_PLUGIN_DIR to the build's plugins/ directory", file=sys.stderr)
        sys.exit(2)
    main()
