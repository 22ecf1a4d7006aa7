#!/usr/bin/env bash
# Builds the container image from docker/Dockerfile with podman and checks
# that it runs: it starts, passes its health check (on the default port and
# on a configured one), and serves a WebSocket subscribe and an HTTP emit
# (the event reaches the subscriber). Then the cluster of docker/compose.yml
# (Redis, two nodes linked by --broker, nginx in front; docker-compose
# against podman's API socket): every container healthy and not root, only
# 127.0.0.1 published, and an event emitted on one node reaches subscribers
# that came in through nginx on either node. Run by .ci/run; needs root
# (rootful podman) and Debian's mirror, not Docker Hub.
#
# On a machine without a Docker daemon or Docker Hub (see the README,
# "Containers"): installs podman and its helpers (scripts/deps.sh
# --containers), sets the two containers.conf settings such machines need
# (open-file limits within the hard limit, the runc runtime), and makes the
# debian:12 and debian:12-slim base images with mmdebstrap when podman has
# none. Containers publish on 127.0.0.1 only and are removed at the end,
# with the podman API service the script started.
# Environment: IMAGE (default scopecast:test), KEEP_IMAGE=1 keeps the images
# (scopecast's and the cluster's).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/deps.sh --containers

IMAGE=${IMAGE:-scopecast:test}
NAME=sc-ctest-$$
log() { printf 'container-test: %s\n' "$*" >&2; }

# --- podman settings (only what is missing) --------------------------------
conf=/etc/containers/containers.conf
if ! grep -qs '^default_ulimits' "$conf"; then
  hard=$(ulimit -Hn)
  [ "$hard" = unlimited ] && hard=1048576
  mkdir -p /etc/containers
  {
    echo "[containers]"
    echo "default_ulimits = [\"nofile=$hard:$hard\", \"nproc=32768:32768\"]"
    echo "[engine]"
    echo "runtime = \"runc\""
  } >>"$conf"
  log "wrote $conf (nofile $hard, runc)"
fi

# --- container names in DNS -------------------------------------------------
# The cluster's containers find each other by name (redis, node-a, node-b).
# podman 4.3 with the CNI network backend (Debian 12's) does that only with
# the dnsname plugin; without it nginx cannot resolve its upstreams.
if [ "$(podman info --format '{{.Host.NetworkBackend}}')" = cni ] &&
  ! dpkg-query -W -f='${Status}' golang-github-containernetworking-plugin-dnsname 2>/dev/null |
  grep -q "install ok installed"; then
  log "installing the CNI dnsname plugin (container names in DNS)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    golang-github-containernetworking-plugin-dnsname >/dev/null
fi

# --- base images -------------------------------------------------------------
if ! podman image exists docker.io/library/debian:12; then
  log "making the debian:12 base image with mmdebstrap"
  tb=$(date +%s)
  tmp=$(mktemp -d)
  mmdebstrap --variant=minbase bookworm "$tmp/rootfs.tar" >/dev/null 2>&1
  podman import "$tmp/rootfs.tar" docker.io/library/debian:12 >/dev/null
  rm -rf "$tmp"
  log "made in $(($(date +%s) - tb)) s"
fi
if ! podman image exists docker.io/library/debian:12-slim; then
  podman tag docker.io/library/debian:12 docker.io/library/debian:12-slim
fi

# --- build ---------------------------------------------------------------------
log "building $IMAGE"
t0=$(date +%s)
podman build --format docker -f docker/Dockerfile -t "$IMAGE" . >/tmp/container-build.log 2>&1 ||
  { tail -40 /tmp/container-build.log >&2; log "FAILED: image build"; exit 1; }
log "built in $(($(date +%s) - t0)) s; $(podman image inspect "$IMAGE" --format '{{.Size}}') bytes"

# the cluster: a compose project of its own, docker-compose talking to a
# podman API service this script starts (and stops)
PROJECT=scctest$$ # docker-compose 1.29 keeps only [-_a-z0-9] of a name
SOCK=/run/sc-ctest-$$.sock
svc_pid=
lb_port= a_port= b_port=
tmpd=$(mktemp -d)
dc() {
  DOCKER_HOST=unix://$SOCK SCOPECAST_API_KEY=ctest-key SCOPECAST_DEMO=0 \
    SCOPECAST_JWT_SECRET= SCOPECAST_HTTP_PORT=$lb_port \
    SCOPECAST_NODE_A_PORT=$a_port SCOPECAST_NODE_B_PORT=$b_port \
    docker-compose -p "$PROJECT" -f docker/compose.yml -f docker/compose.test.yml "$@"
}

cleanup() {
  podman rm -f "$NAME-a" "$NAME-b" >/dev/null 2>&1 || true
  if [ -n "$svc_pid" ]; then
    rmi=(--rmi local) # the images compose built (all four: no image: keys)
    [ "${KEEP_IMAGE:-0}" = 1 ] && rmi=()
    dc down -v "${rmi[@]}" >>/tmp/container-compose.log 2>&1 || true
    # whatever compose left behind
    podman ps -aq --filter "label=com.docker.compose.project=$PROJECT" |
      xargs -r podman rm -f >/dev/null 2>&1 || true
    kill "$svc_pid" 2>/dev/null || true
    wait "$svc_pid" 2>/dev/null || true
    rm -f "$SOCK"
  fi
  if [ "${KEEP_IMAGE:-0}" != 1 ]; then podman rmi -f "$IMAGE" >/dev/null 2>&1 || true; fi
  rm -rf "$tmpd"
}
trap cleanup EXIT

# podman run without systemd says at every start that it cannot set up the
# health check timer (expected here: the test runs the check itself); the
# rest of what it says is shown
prun() {
  podman run "$@" 2> >(grep -v 'systemd connection' >&2)
}

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# healthy NAME [TRIES]: waits for the health check to pass (podman runs it
# on demand: no systemd timer here): TRIES checks 0.2 s apart (default 50;
# a check takes about 0.4 s itself)
healthy() {
  for _ in $(seq 1 "${2:-50}"); do
    if podman healthcheck run "$1" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  podman logs "$1" >&2 || true
  return 1
}

# --- run: default port ---------------------------------------------------------
port=$(free_port)
prun -d --name "$NAME-a" -p "127.0.0.1:$port:8080" \
  -e SCOPECAST_API_KEY=ctest-key "$IMAGE" >/dev/null
healthy "$NAME-a" || { log "FAILED: not healthy on 8080"; exit 1; }
log "healthy on the default port"

# a WebSocket subscriber and an HTTP emit through the published port
/usr/bin/python3 - "$port" <<'PY'
import asyncio, json, sys, urllib.request
import websockets

port = int(sys.argv[1])

async def main():
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws",
                                  subprotocols=["scopecast.v1"]) as ws:
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert welcome["op"] == "welcome", welcome
        await ws.send(json.dumps({"op": "subscribe", "scope": "ctest", "id": 1}))
        sub = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert sub["op"] == "subscribed", sub
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/emit", method="POST",
            data=json.dumps({"scope": "ctest", "data": {"hello": "container"}}).encode(),
            headers={"Content-Type": "application/json",
                     "Authorization": "Bearer ctest-key"})
        res = await asyncio.to_thread(urllib.request.urlopen, req, None, 5)
        assert res.status == 202, res.status
        seq = json.loads(res.read())["seq"]
        ev = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert ev["op"] == "event" and ev["seq"] == seq, ev
        assert ev["data"] == {"hello": "container"}, ev

asyncio.run(main())
print("container-test: subscribe + emit through the container: ok", file=sys.stderr)
PY

# it runs as nobody
user=$(podman exec "$NAME-a" id -un)
[ "$user" = nobody ] || { log "FAILED: runs as $user"; exit 1; }

# --- run: a configured port: the health check follows it ------------------
port2=$(free_port)
# with the example plugins the image ships (their libraries, libpq
# included, must be in the runtime stage; a plugin that fails stops the
# server, and the health check with it)
P=/opt/scopecast/lib/scopecast/plugins
plugins='["'$P'/authz.so", "'$P'/fswatch.so:{\"dir\":\"/tmp\"}", "'$P'/pgnotify.so:{\"conninfo\":\"hostaddr=127.0.0.1 port=1\",\"channels\":[\"c\"]}", "'$P'/hello.so:{\"scope\":\"ticks\"}"]'
prun -d --name "$NAME-b" -p "127.0.0.1:$port2:9000" \
  -e SCOPECAST_PORT=9000 -e SCOPECAST_PLUGIN="$plugins" "$IMAGE" >/dev/null
healthy "$NAME-b" || { log "FAILED: not healthy on SCOPECAST_PORT=9000 with the plugins"; exit 1; }
# (the log read whole first: with pipefail, grep -q leaving early fails a
# `podman logs | grep -q` that is still writing)
blog=$(podman logs "$NAME-b" 2>&1)
for p in authz fswatch pgnotify hello; do
  grep -q "plugin $p loaded" <<<"$blog" ||
    { log "FAILED: plugin $p not loaded"; printf '%s\n' "$blog" >&2; exit 1; }
done
log "the image's plugins load"
/usr/bin/python3 -c 'import sys, urllib.request
assert urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=5).read() == b"ok"' "$port2"
log "healthy on SCOPECAST_PORT=9000"
# and unhealthy once the server is gone (the check is not always true)
podman exec "$NAME-b" kill 1 2>/dev/null || podman stop -t 2 "$NAME-b" >/dev/null
if podman healthcheck run "$NAME-b" >/dev/null 2>&1; then
  log "FAILED: the health check passed with the server stopped"
  exit 1
fi
log "single container: ok"

# --- the cluster: docker/compose.yml -------------------------------------------
# Redis, node-a and node-b (SCOPECAST_BROKER=redis://redis:6379), nginx in
# front; docker/compose.test.yml publishes each node too (on 127.0.0.1), so
# the check can ask a node which WebSocket it holds and emit into a given one.
lb_port=$(free_port) a_port=$(free_port) b_port=$(free_port)
podman system service --time=0 "unix://$SOCK" >/tmp/container-podman-service.log 2>&1 &
svc_pid=$!
for _ in $(seq 1 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || { log "FAILED: podman system service did not open $SOCK"; exit 1; }

# cid SERVICE: its container (faster than docker-compose ps)
cid() {
  podman ps -aq --filter "label=com.docker.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=$1"
}

cluster_failed() {
  dc ps >&2 || true
  dc logs --tail=30 >&2 || true
  log "FAILED: $*"
  exit 1
}

log "building and starting the cluster (docker-compose, project $PROJECT)"
t0=$(date +%s)
dc up -d --build >/tmp/container-compose.log 2>&1 ||
  { tail -40 /tmp/container-compose.log >&2; cluster_failed "compose up"; }
t1=$(date +%s)
log "cluster built and started in $((t1 - t0)) s"
for svc in redis node-a node-b nginx; do
  id=$(cid "$svc")
  [ -n "$id" ] || cluster_failed "no container for $svc"
  # a node is healthy once it is linked to Redis
  healthy "$id" 150 || cluster_failed "$svc not healthy"
  user=$(podman exec "$id" id -un)
  [ "$user" != root ] || cluster_failed "$svc runs as root"
  # published on 127.0.0.1 only (Redis: nowhere)
  ports=$(podman port "$id")
  if [ "$svc" = redis ] && [ -n "$ports" ]; then cluster_failed "redis is published: $ports"; fi
  if grep -qv -e '^$' -e '-> 127\.0\.0\.1:' <<<"$ports"; then
    cluster_failed "$svc published beyond 127.0.0.1: $ports"
  fi
  log "$svc healthy, runs as $user"
done
log "cluster healthy $(($(date +%s) - t1)) s after start"

# cross_node LABEL: subscribers through nginx until both nodes have one
# (for up to 20 s: after a node's restart nginx needs a moment to find its
# new address); then an event emitted into node-a, one into node-b (each
# straight to the node) and one through nginx reach them all, in order
cat >"$tmpd/cross_node.py" <<'PY'
import asyncio, json, sys, time, urllib.request
import websockets

label, lb = sys.argv[1], int(sys.argv[2])
ports = {"node-a": int(sys.argv[3]), "node-b": int(sys.argv[4])}
KEY = {"Authorization": "Bearer ctest-key"}
SCOPE = "ctest:" + label.replace(" ", "-")

def log(msg):
    print(f"container-test: {label}: {msg}", file=sys.stderr)

def http(port, path, body=None):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method="POST" if body else "GET",
        data=json.dumps(body).encode() if body else None,
        headers=dict(KEY, **({"Content-Type": "application/json"} if body else {})))
    with urllib.request.urlopen(req, timeout=5) as res:
        return res.status, res.read().decode()

def subscribers():
    return {n: json.loads(http(p, "/api/stats")[1])["subscribers"] for n, p in ports.items()}

async def call(fn, *args):
    return await asyncio.to_thread(fn, *args)

async def subscribe():
    ws = await websockets.connect(f"ws://127.0.0.1:{lb}/ws", subprotocols=["scopecast.v1"],
                                  open_timeout=10)
    welcome = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert welcome["op"] == "welcome", welcome
    await ws.send(json.dumps({"op": "subscribe", "id": 1, "scope": SCOPE, "presence": False}))
    sub = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert sub["op"] == "subscribed", sub
    return ws

async def main():
    for n, p in ports.items():  # both linked to Redis
        metrics = (await call(http, p, "/metrics"))[1].splitlines()
        assert "scopecast_broker_up 1" in metrics, (n, [l for l in metrics if "broker_up" in l])
    subs = {}  # node -> its subscriber
    try:
        deadline = time.monotonic() + 20
        while len(subs) < 2:
            assert time.monotonic() < deadline, f"WebSockets through nginx went only to {list(subs)}"
            before = await call(subscribers)
            ws = await subscribe()
            after = await call(subscribers)
            node = [n for n in ports if after[n] == before[n] + 1]
            assert len(node) == 1, (before, after)
            if node[0] in subs:
                await ws.close()
                await asyncio.sleep(0.5)
                continue
            subs[node[0]] = ws
            log(f"a subscriber through nginx landed on {node[0]}")
        last = 0
        for target, port in [("node-a", ports["node-a"]), ("node-b", ports["node-b"]), ("nginx", lb)]:
            data = {"via": target}
            status, body = await call(http, port, "/api/emit", {"scope": SCOPE, "data": data})
            assert status == 202, (status, body)
            seq = json.loads(body)["seq"]
            assert seq > last, (seq, last)
            last = seq
            for node, ws in subs.items():
                ev = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert ev["op"] == "event" and ev["seq"] == seq and ev["data"] == data, (node, ev)
            log(f"emitted into {target}: seq {seq} reached the subscribers on node-a and node-b")
    finally:
        for ws in subs.values():
            await ws.close()

asyncio.run(main())
PY
cross_node() {
  /usr/bin/python3 "$tmpd/cross_node.py" "$1" "$lb_port" "$a_port" "$b_port" ||
    cluster_failed "$1: cross-node delivery"
}
cross_node "cluster"

# metric PORT NAME: a node's /metrics value
metric() {
  /usr/bin/python3 - "$@" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
print(next((l.split()[1] for l in text.splitlines() if l.split()[:1] == [sys.argv[2]]), "none"))
PY
}

# Redis stopped: the nodes' health checks fail (/healthz 503 "broker: ...").
# Started again (no persistence; podman gives it a new address): both
# nodes link again by name (their scopecast_broker_links_total goes up)
# and deliver across nodes
links_a=$(metric "$a_port" scopecast_broker_links_total)
links_b=$(metric "$b_port" scopecast_broker_links_total)
podman stop -t 5 "$(cid redis)" >/dev/null 2> >(grep -v 'systemd' >&2)
for svc in node-a node-b; do
  unhealthy=
  for _ in $(seq 1 25); do
    if ! podman healthcheck run "$(cid "$svc")" >/dev/null 2>&1; then unhealthy=1 && break; fi
    sleep 0.2
  done
  [ -n "$unhealthy" ] || cluster_failed "$svc still healthy with Redis stopped"
done
log "both nodes unhealthy with Redis stopped"
t2=$(date +%s)
podman start "$(cid redis)" >/dev/null 2> >(grep -v 'systemd' >&2)
relinked=
for _ in $(seq 1 100); do
  if [ "$(metric "$a_port" scopecast_broker_links_total)" -gt "$links_a" ] &&
    [ "$(metric "$b_port" scopecast_broker_links_total)" -gt "$links_b" ] &&
    [ "$(metric "$a_port" scopecast_broker_up)" = 1 ] &&
    [ "$(metric "$b_port" scopecast_broker_up)" = 1 ]; then
    relinked=1
    break
  fi
  sleep 0.2
done
[ -n "$relinked" ] || cluster_failed "the nodes did not link again after Redis started"
log "both nodes linked again $(($(date +%s) - t2)) s after Redis started"
for svc in node-a node-b; do
  healthy "$(cid "$svc")" 150 || cluster_failed "$svc not healthy after Redis started"
done
cross_node "after a Redis restart"

# node-a restarted (a new address too): nginx follows it (nginx-entrypoint
# reloads nginx when an upstream's address changes)
podman restart "$(cid node-a)" >/dev/null 2> >(grep -v 'systemd' >&2)
healthy "$(cid node-a)" 150 || cluster_failed "node-a not healthy after its restart"
cross_node "after node-a restarted"
log "ok ($(($(date +%s) - start)) s in all)"
