#!/usr/bin/env bash
# Builds the container image from docker/Dockerfile with podman and checks
# that it runs: it starts, passes its health check (on the default port and
# on a configured one), and serves a WebSocket subscribe and an HTTP emit
# (the event reaches the subscriber). Run by .ci/run; needs root (rootful
# podman) and Debian's mirror, not Docker Hub.
#
# On a machine without a Docker daemon or Docker Hub (see the README,
# "Containers"): installs podman and its helpers (scripts/deps.sh
# --containers), sets the two containers.conf settings such machines need
# (open-file limits within the hard limit, the runc runtime), and makes the
# debian:12 and debian:12-slim base images with mmdebstrap when podman has
# none. Containers publish on 127.0.0.1 only and are removed at the end.
# Environment: IMAGE (default scopecast:test), KEEP_IMAGE=1 keeps the image.
set -euo pipefail
cd "$(dirname "$0")/.."
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

# --- base images -------------------------------------------------------------
if ! podman image exists docker.io/library/debian:12; then
  log "making the debian:12 base image with mmdebstrap"
  tmp=$(mktemp -d)
  mmdebstrap --variant=minbase bookworm "$tmp/rootfs.tar" >/dev/null 2>&1
  podman import "$tmp/rootfs.tar" docker.io/library/debian:12 >/dev/null
  rm -rf "$tmp"
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

cleanup() {
  podman rm -f "$NAME-a" "$NAME-b" >/dev/null 2>&1 || true
  if [ "${KEEP_IMAGE:-0}" != 1 ]; then podman rmi -f "$IMAGE" >/dev/null 2>&1 || true; fi
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

# healthy NAME: waits for the health check to pass (podman runs it on
# demand: no systemd timer here)
healthy() {
  for _ in $(seq 1 50); do
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
for p in authz fswatch pgnotify hello; do
  podman logs "$NAME-b" 2>&1 | grep -q "plugin $p loaded" ||
    { log "FAILED: plugin $p not loaded"; podman logs "$NAME-b" >&2; exit 1; }
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
log "ok"
