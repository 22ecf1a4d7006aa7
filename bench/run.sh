#!/usr/bin/env bash
# scopecast side-by-side benchmark.
#
#   bench/run.sh [SCENARIO] [SERVER]
#     SCENARIO: S1 S2 S3 S4 S5 S6 MC HS CL H1 or all (default all); several
#               as one quoted argument ("S3 S4")
#     SERVER:   scopecast uws nchan nodews mosquitto or all (default all)
#
# Each measurement starts a fresh server pinned to core $SERVER_CORE, runs
# bench/loadgen pinned to core $LOADGEN_CORE for $DURATION seconds (after
# $WARMUP), stops the server by its PID and appends the loadgen's RESULT line
# to the "Raw results" section of bench/RESULTS.md; the tables above it are
# rebuilt from all raw lines, so re-running one scenario or one server
# replaces only its own rows.
#
# Environment: DURATION (10) WARMUP (2) REPEAT (1: best of N runs)
#   SERVER_CORE (0) LOADGEN_CORE (1) RESULTS (bench/RESULTS.md)
#   BUILD_DIR (build-bench) NO_INSTALL=1 (skip apt-get/npm)
#   S1_WINDOW_<server>=N / S1_BATCH_<server>=N ... per-scenario overrides
#   H1_CLIENTS ("8 64": wrk connections, one row each) H1_BODY (the JSON body)
#   SCOPECAST_BIN (a scopecast binary to measure instead of the one built
#   here, e.g. an older commit's; the build still runs for the loadgen)
#
# Scenarios
#   S1 saturation: 1 scope x 1000 subscribers x 64-byte events, closed loop
#   S2 1000 scopes x 10 subscribers (10,000 connections), closed loop
#   S3 latency at a fixed 100k deliveries/s (1 scope x 1000 x 100 events/s)
#   S4 S3 plus one subscriber that never reads: others' latency, server RSS
#   S5 10,000 idle subscribed connections: server RSS per connection
#   S6 16 KB events, 1 scope x 1000 subscribers, closed loop
#   MC multi-core efficiency, scopecast only: S1's load against 1 and 2
#      service threads (the 2-thread server may use both cores, the loadgen
#      shares one of them); the figure is server CPU-seconds per million
#      deliveries, not the rate
#   HS the cost of history, scopecast only: S1's load against scopecast
#      without --history and with --history '*=500' (every event kept,
#      500 per scope), REPEAT runs of each alternated so both see the same
#      machine; the best of each and their ratio
#   CL the Redis broker, scopecast only: S1's load against (a) one node
#      without --broker, (b) one node with --broker (publisher and
#      subscribers on it, every emit through Redis), (c) two nodes on one
#      Redis, publisher on node A and the 1000 subscribers on node B; each
#      with S1's WebSocket publisher and with HTTP batch emits, CL_REPEAT
#      (3) runs of every variant alternated, CL_DURATION (6) s each; then
#      redis-benchmark: PUBLISH against EVAL of the broker's script (and
#      EVALSHA), one request at a time and pipelined. Needs redis-server
#      and redis-benchmark (Debian redis-server, redis-tools).
#      CL_REDIS_CORE / CL_PUB_CORE (default the loadgen's core): where
#      Redis and node A run; the subscribers' node is on SERVER_CORE
#   H1 HTTP publishing, scopecast (POST /api/emit), nchan and uWS
#      (POST /pub/ch1) only: one ~30-byte JSON event per request, wrk with
#      1 thread and H1_CLIENTS keep-alive connections (8, then 64), one
#      request in flight per connection (no pipelining), one WebSocket
#      subscriber to ch1 reading every 2 ms (bench/h1_sub.py, on the
#      loadgen core with wrk) so every publish is delivered and counted;
#      the figure is requests/s, and a run with non-2xx answers or socket
#      errors is shown as such instead of a rate
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
BUILD=${BUILD_DIR:-$ROOT/build-bench}
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
RESULTS=${RESULTS:-$BENCH/RESULTS.md}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
REPEAT=${REPEAT:-1}
SERVER_CORE=${SERVER_CORE:-0}
LOADGEN_CORE=${LOADGEN_CORE:-1}
ALL_SCENARIOS="S1 S2 S3 S4 S5 S6 MC HS CL H1"
H1_SERVERS="scopecast uws nchan"
ALL_SERVERS="scopecast uws nchan nodews mosquitto"

ORIG_ARGS="$*"
want_scen=${1:-all}
want_srv=${2:-all}
[ "$want_scen" = all ] && want_scen=$ALL_SCENARIOS
[ "$want_srv" = all ] && want_srv=$ALL_SERVERS
for s in $want_scen; do
  case " $ALL_SCENARIOS " in *" $s "*) ;; *) echo "unknown scenario $s ($ALL_SCENARIOS)" >&2; exit 2 ;; esac
done
for s in $want_srv; do
  case " $ALL_SERVERS " in *" $s "*) ;; *) echo "unknown server $s ($ALL_SERVERS)" >&2; exit 2 ;; esac
done

log() { printf '[bench] %s\n' "$*" >&2; }

# ---- dependencies ----------------------------------------------------------
install_deps() {
  bash "$ROOT/scripts/deps.sh"
  local missing=() p
  for p in nginx libnginx-mod-nchan mosquitto wrk; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  if [ ${#missing[@]} -gt 0 ]; then
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    log "installing ${missing[*]}"
    $sudo apt-get update -qq
    # policy-rc.d/no systemd: the packages' own services are not started
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # the Debian packages may start their system services: this benchmark runs
  # its own instances and never uses those
  if [ -f "$BENCH/peers/node/package-lock.json" ] &&
     { [ ! -d "$BENCH/peers/node/node_modules/ws" ] || [ ! -d "$BENCH/peers/node/node_modules/uws-pack" ]; }; then
    log "npm ci in bench/peers/node"
    (cd "$BENCH/peers/node" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  fi
}

build() {
  log "building scopecast (Release) in $BUILD"
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DSC_BUILD_TESTS=OFF >/dev/null
  cmake --build "$BUILD" -j2 >/dev/null
  LOADGEN=$BUILD/bench/loadgen/loadgen
  if [ ! -x "$LOADGEN" ]; then
    # bench/CMakeLists.txt does not add loadgen yet: build it on its own
    cmake -S "$BENCH/loadgen" -B "$BUILD/loadgen-standalone" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$BUILD/loadgen-standalone" -j2 >/dev/null
    LOADGEN=$BUILD/loadgen-standalone/loadgen
  fi
  SCOPECAST=${SCOPECAST_BIN:-$BUILD/server/scopecast}
  if [ -n "${SCOPECAST_BIN:-}" ]; then log "measuring scopecast binary $SCOPECAST_BIN"; fi
}

if [ "${NO_INSTALL:-0}" != 1 ]; then install_deps; fi
build

# file descriptors: S2/S5 open 10,000 connections on each side
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" -lt 12000 ]; then
  log "warning: ulimit -n is $(ulimit -n); S2 and S5 need more than 10,000"
fi

WORK=$(mktemp -d /tmp/scopecast-bench.XXXXXX)
log "logs in $WORK"

# ---- servers ---------------------------------------------------------------
SRV_PID=""
SRV_PIDS=""
SUB_PID="" # H1's subscriber
CL_PIDS="" # CL's other processes (node A, redis-server, Redis subscribers)
cleanup() {
  if [ -n "$SUB_PID" ]; then kill -TERM "$SUB_PID" 2>/dev/null || true; fi
  if [ -n "$SRV_PID" ]; then stop_server; fi
  local p
  for p in $CL_PIDS; do stop_pid "$p"; done
}
# INT/TERM end the run (the EXIT trap then stops what is still running);
# a trap that only cleaned up used to let the script go on to the next run
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() {
  local p=$1
  while ! port_free "$p"; do p=$((p + 1)); done
  echo "$p"
}
wait_port() {
  local i
  for i in $(seq 1 100); do
    if ! kill -0 "$SRV_PID" 2>/dev/null; then return 1; fi
    if ! port_free "$1"; then return 0; fi
    sleep 0.1
  done
  return 1
}

start_server() { # name port
  local name=$1 port=$2 d=$WORK/$1-$2
  mkdir -p "$d"
  case $name in
    scopecast)
      # closed-loop scenarios need room for the whole window in every queue;
      # the others run with the default queue size (256), as users would
      # (each subscription's ring is allocated at --maxsize slots)
      local maxsize=256
      case $CUR_SCEN in S1|S2|S6) maxsize=4096 ;; esac
      local threads=${CUR_THREADS:-1} cores=${CUR_CORE:-$SERVER_CORE}
      [ "$threads" -gt 1 ] && cores="$SERVER_CORE,$LOADGEN_CORE"
      # every client of a benchmark comes from 127.0.0.1 and the publisher
      # sends far more than 200 requests/s: the budgets meant for hostile
      # clients are off (an older binary, SCOPECAST_BIN, may lack them)
      # (--help is read whole first: with pipefail, `--help | grep -q` fails
      # whenever grep exits before scopecast has written everything, and
      # the budgets were then silently left on: publishers closed with 4429)
      local budgets=() help
      help=$("$SCOPECAST" --help 2>&1 || true)
      grep -q -- --rate-limit <<<"$help" && budgets+=(--rate-limit 0)
      grep -q -- --max-connections-per-ip <<<"$help" && budgets+=(--max-connections-per-ip 0)
      [ -n "${CUR_HISTORY:-}" ] && budgets+=(--history "$CUR_HISTORY")
      [ -n "${CUR_BROKER:-}" ] && budgets+=(--broker "$CUR_BROKER")
      taskset -c "$cores" "$SCOPECAST" --host 127.0.0.1 --port "$port" --threads "$threads" \
        --maxsize "$maxsize" --max-connections 20000 --client-emit --api-loopback --log-level "${SC_LOG_LEVEL:-warn}" \
        "${budgets[@]}" >>"$d/server.log" 2>&1 &
      SRV_PID=$! ;;
    uws)
      PORT=$port HOST=127.0.0.1 taskset -c "$SERVER_CORE" node "$BENCH/peers/node/uws-server.mjs" >"$d/server.log" 2>&1 &
      SRV_PID=$! ;;
    nodews)
      PORT=$port HOST=127.0.0.1 taskset -c "$SERVER_CORE" node "$BENCH/peers/node/ws-server.js" >"$d/server.log" 2>&1 &
      SRV_PID=$! ;;
    nchan)
      sed -e "s#@PORT@#$port#g" -e "s#@DIR@#$d#g" "$BENCH/peers/nginx/nginx.conf" >"$d/nginx.conf"
      taskset -c "$SERVER_CORE" nginx -p "$d" -c "$d/nginx.conf" -e stderr >"$d/server.log" 2>&1 &
      SRV_PID=$! ;;
    mosquitto)
      sed -e "s#@PORT@#$port#g" -e "s#@MQTTPORT@#$(pick_port $((port + 1000)))#g" \
        "$BENCH/peers/mosquitto/mosquitto.conf" >"$d/mosquitto.conf"
      taskset -c "$SERVER_CORE" mosquitto -c "$d/mosquitto.conf" >"$d/server.log" 2>&1 &
      SRV_PID=$! ;;
  esac
  if ! wait_port "$port"; then
    log "$name did not start; its log:"
    tail -20 "$d/server.log" >&2 || true
    SRV_PID=""
    return 1
  fi
  SRV_PIDS=$SRV_PID
  if [ "$name" = nchan ]; then # master + its worker
    local w
    for w in $(pgrep -P "$SRV_PID" || true); do SRV_PIDS="$SRV_PIDS,$w"; done
  fi
  sleep 0.3
}

stop_pid() { # pid: TERM, up to 5 s, then KILL (only our own children)
  local pid=$1 i
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

stop_server() {
  local pid=$SRV_PID
  SRV_PID=""
  stop_pid "$pid"
}

# ---- scenarios -------------------------------------------------------------
proto_of() {
  case $1 in scopecast) echo scopecast ;; uws|nodews) echo raw ;; nchan) echo nchan ;; mosquitto) echo mqtt ;; esac
}

# closed-loop window (events in flight) and batch per scenario and server,
# chosen so that no server is measured on a pathological pipeline (see
# bench/README.md); overridable with S1_WINDOW_uws=... etc.
knob() { # scenario server kind default
  local v="${1}_${3}_${2}"
  echo "${!v:-$4}"
}
window_batch() { # scenario server -> "--window W --batch B [--pipeline P] --read-us U"
  local s=$1 srv=$2 w b p="" r=2000
  case $s:$srv in
    # scopecast keeps up to --maxsize (4096 here) per subscriber and packs
    # them into ~16 KB writes: at W=256 it idles between batches (3.3M at
    # 70% CPU); W=1024 keeps it busy (6.0M at 99%).
    S1:scopecast) w=1024 b=256 ;;
    # uWS drains a subscriber inside publish() once it holds 32 messages,
    # while the publisher's socket is corked: every message then costs a
    # syscall and throughput collapses (0.27M at W=256). 31 in flight keeps
    # it on its fast path.
    S1:uws)       w=31  b=31 r=1000 ;;
    S1:nchan)     w=256 b=32 p=64 ;;
    S1:*)         w=256 b=32 ;;
    # one POST carrying 4096 events spread over 1000 scopes gives each
    # connection ~4 events per write (b=1024: 129k/s, b=4096: 415-448k/s);
    # uWS gets the same chance with S2_WINDOW_uws/S2_BATCH_uws (see notes)
    S2:scopecast) w=8192 b=4096 ;;
    # uWS also does better with bigger batches here (b=256: ~330k,
    # b=1024: ~650k)
    S2:uws)       w=8192 b=1024 ;;
    S2:nchan)     w=4096 b=256 p=256 ;;
    S2:*)         w=4096 b=256 ;;
    S6:scopecast) w=16 b=8 ;;
    S6:nchan)     w=16 b=8 p=16 ;;
    S6:*)         w=16 b=8 ;;
  esac
  w=$(knob "$s" "$srv" WINDOW "$w")
  b=$(knob "$s" "$srv" BATCH "$b")
  p=$(knob "$s" "$srv" PIPELINE "$p")
  r=$(knob "$s" "$srv" READUS "$r")
  echo "--window $w --batch $b${p:+ --pipeline $p} --read-us $r"
}

lg_args() { # scenario server
  local s=$1 srv=$2
  local common="--proto $(proto_of "$srv") --duration $DURATION --warmup $WARMUP"
  # scopecast's publisher: WebSocket emit ops (ws, like the uWS and Node ws
  # peers' publishers) or HTTP POST /api/emit batches (http). S2 publishes
  # 4096-event batches to 1000 scopes: one HTTP request per batch beats 4096
  # emit ops and their replies there. SC_PUB=ws|http forces one for every
  # scenario, S3_PUB_scopecast=http one scenario's. The "pub" column of
  # RESULTS.md says which was used.
  if [ "$srv" = scopecast ]; then
    local def=ws
    [ "$s" = S2 ] && def=http
    if [ "${SC_PUB:-$(knob "$s" scopecast PUB "$def")}" = ws ]; then
      common="$common --pub-ws"
    fi
  fi
  case $s in
    S1) echo "$common --subs 1000 --scopes 1 --size 64 $(window_batch S1 "$srv")" ;;
    S2) echo "$common --subs 10000 --scopes 1000 --size 64 $(window_batch S2 "$srv")" ;;
    # one event per publish; a publisher that fell behind catches up in
    # batches of up to 16
    S3) echo "$common --subs 1000 --scopes 1 --size 64 --deliveries-rate 100000 --read-us 0 --batch 16" ;;
    S4) echo "$common --subs 1000 --scopes 1 --size 64 --deliveries-rate 100000 --read-us 0 --batch 16 --stall 1" ;;
    # 1000 scopes x 10 like S2: with all 10,000 in one scope scopecast's
    # presence (join pushes, presence lists in replies) is O(N^2) (see notes)
    S5) echo "--proto $(proto_of "$srv") --subs 10000 --scopes 1000 --idle --settle 3" ;;
    S6) echo "$common --subs 1000 --scopes 1 --size 16384 $(window_batch S6 "$srv")" ;;
  esac
}

# the figure that decides "best of REPEAT": higher is better for throughput,
# lower for latency and memory
score() { # scenario resultline
  local key
  case $1 in
    S1|S2|S6|MC|HS) key=deliveries_per_s ;;
    S3|S4) key=p99_us ;;
    S5) key=bytes_per_conn ;;
  esac
  local v
  v=$(sed -n "s/.* $key=\([0-9.]*\).*/\1/p" <<<" $2")
  case $1 in S1|S2|S6|MC|HS) echo "${v:-0}" ;; *) echo "-${v:-999999999}" ;; esac
}

CUR_SCEN=""
run_one() { # scenario server[/threads] -> prints "SCEN SERVER DATE RESULT..."
  local s=$1 srv=$2 port best="" bestscore="" r n args
  local base=${srv%%/*} ls=$s
  [ "$s" = MC ] && ls=S1 # MC: S1's load
  [ "$s" = HS ] && ls=S1 # HS: S1's load
  CUR_SCEN=$ls
  args=$(lg_args "$ls" "$base")
  for n in $(seq 1 "$REPEAT"); do
    port=$(pick_port 18400)
    if ! start_server "$base" "$port"; then
      echo "$s $srv $(date -u +%FT%TZ) RESULT error=server_start"
      return
    fi
    log "$s $srv (run $n/$REPEAT): loadgen $args"
    # shellcheck disable=SC2086
    r=$(taskset -c "$LOADGEN_CORE" "$LOADGEN" --port "$port" --server-pid "$SRV_PIDS" $args \
        2>>"$WORK/$s-${srv//\//-}.loadgen.log" | grep '^RESULT' | tail -1) || true
    stop_server
    [ -n "$r" ] || r="RESULT error=loadgen"
    log "  $r"
    local sc
    sc=$(score "$s" "$r")
    if [ -z "$best" ] || awk -v a="$sc" -v b="$bestscore" 'BEGIN{exit !(a+0>b+0)}'; then
      best=$r
      bestscore=$sc
    fi
  done
  echo "$s $srv $(date -u +%FT%TZ) $best args=${args// /,} repeat=$REPEAT"
}

# ---- HS: S1 without and with history, alternated ---------------------------
run_hs() { # -> prints the best "HS scopecast/plain ..." and "HS scopecast/history ..."
  local n v line best_plain="" best_hist="" sp=-1 sh=-1 sc reps=$REPEAT
  for n in $(seq 1 "$reps"); do
    for v in plain history; do
      if [ $v = history ]; then
        line=$(REPEAT=1 CUR_HISTORY='*=500' run_one HS scopecast/history)
      else
        line=$(REPEAT=1 CUR_HISTORY='' run_one HS scopecast/plain)
      fi
      sc=$(score HS "$line")
      if [ $v = plain ] && awk -v a="$sc" -v b="$sp" 'BEGIN{exit !(a+0>b+0)}'; then best_plain=$line; sp=$sc; fi
      if [ $v = history ] && awk -v a="$sc" -v b="$sh" 'BEGIN{exit !(a+0>b+0)}'; then best_hist=$line; sh=$sc; fi
    done
  done
  echo "${best_plain/repeat=1/repeat=$reps}"
  echo "${best_hist/repeat=1/repeat=$reps}"
}

# ---- CL: the Redis broker ---------------------------------------------------
# S1's load against one node without --broker (single), one node with it
# (broker1: publisher and subscribers on the node, every emit through
# Redis) and two nodes on one Redis (broker2: the publisher on node A, the
# subscribers on node B), alternated; then redis-benchmark.
CL_DURATION=${CL_DURATION:-6}
CL_REPEAT=${CL_REPEAT:-3}
CL_REDIS_CORE=${CL_REDIS_CORE:-$LOADGEN_CORE}
CL_PUB_CORE=${CL_PUB_CORE:-$LOADGEN_CORE}
CL_SETUPS=${CL_SETUPS:-"single broker1 broker2"}
# ws: S1's publisher (emit ops on one WebSocket, window 1024, batch 256);
# http: POST /api/emit with a JSON array of CL_HTTP_BATCH events, one
# request in flight, window CL_HTTP_WINDOW
CL_PUBS=${CL_PUBS:-"ws http"}
CL_HTTP_WINDOW=${CL_HTTP_WINDOW:-1024}
CL_HTTP_BATCH=${CL_HTTP_BATCH:-256}
REDIS_SERVER=${REDIS_SERVER:-$(command -v redis-server || echo /usr/bin/redis-server)}
REDIS_BENCHMARK=${REDIS_BENCHMARK:-$(command -v redis-benchmark || echo /usr/bin/redis-benchmark)}

cl_start_redis() { # port core -> REDIS_PID (also in CL_PIDS)
  local port=$1 core=$2 d=$WORK/redis-$1 i
  mkdir -p "$d"
  REDIS_PID=""
  taskset -c "$core" "$REDIS_SERVER" --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize no --dir "$d" >"$d/redis.log" 2>&1 &
  REDIS_PID=$!
  CL_PIDS="$CL_PIDS $REDIS_PID"
  for i in $(seq 1 50); do
    if ! port_free "$port"; then return 0; fi
    kill -0 "$REDIS_PID" 2>/dev/null || break
    sleep 0.1
  done
  log "redis-server did not start; its log:"
  tail -5 "$d/redis.log" >&2 || true
  return 1
}
cl_forget() { # pid: no longer ours to stop at exit
  local p out=""
  for p in $CL_PIDS; do [ "$p" = "$1" ] || out="$out $p"; done
  CL_PIDS=$out
}
cl_healthy() { # port: /healthz answers 200 (the broker is linked) within 5 s
  local i
  for i in $(seq 1 50); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/healthz" 2>/dev/null)" = 200 ] && return 0
    sleep 0.1
  done
  return 1
}
cl_metric() { # text name -> value (0 when absent)
  awk -v n="$2" '$1 == n { v = $2 } END { print v + 0 }' <<<"$1"
}

cl_one() { # setup pub -> prints "CL scopecast/SETUP-PUB DATE RESULT ..."
  local setup=$1 pub=$2 name="scopecast/$1-$2"
  local rport="" url="" pb pa nb="" na="" pids r args mb ma rinfo extra
  REDIS_PID=""
  if [ "$setup" != single ]; then
    rport=$(pick_port 18600)
    if ! cl_start_redis "$rport" "$CL_REDIS_CORE"; then
      echo "CL $name $(date -u +%FT%TZ) RESULT error=redis_start"
      return
    fi
    url=redis://127.0.0.1:$rport
  fi
  pb=$(pick_port 18400)
  if ! CUR_SCEN=S1 CUR_BROKER=$url start_server scopecast "$pb"; then
    echo "CL $name $(date -u +%FT%TZ) RESULT error=server_start"
    if [ -n "$url" ]; then stop_pid "$REDIS_PID"; cl_forget "$REDIS_PID"; fi
    return
  fi
  nb=$SRV_PID
  pa=$pb
  pids=$nb
  if [ "$setup" = broker2 ]; then
    pa=$(pick_port $((pb + 1)))
    if ! CUR_SCEN=S1 CUR_BROKER=$url CUR_CORE=$CL_PUB_CORE start_server scopecast "$pa"; then
      SRV_PID=$nb
      stop_server
      stop_pid "$REDIS_PID"; cl_forget "$REDIS_PID"
      echo "CL $name $(date -u +%FT%TZ) RESULT error=server_start"
      return
    fi
    na=$SRV_PID
    CL_PIDS="$CL_PIDS $na"
    SRV_PID=$nb
    pids="$pids,$na"
  fi
  [ -n "$url" ] && pids="$pids,$REDIS_PID"
  if [ -n "$url" ] && { ! cl_healthy "$pb" || ! cl_healthy "$pa"; }; then
    log "  a node's broker did not link to $url"
    r="RESULT error=broker_link"
  else
    args=$(DURATION=$CL_DURATION SC_PUB=$pub S1_WINDOW_scopecast=$([ "$pub" = http ] && echo "$CL_HTTP_WINDOW" || echo "${S1_WINDOW_scopecast:-1024}") \
      S1_BATCH_scopecast=$([ "$pub" = http ] && echo "$CL_HTTP_BATCH" || echo "${S1_BATCH_scopecast:-256}") lg_args S1 scopecast)
    log "CL $name: nodes ${nb}${na:+,$na}${url:+, redis $url}; loadgen --port $pb --pub-port $pa $args"
    # shellcheck disable=SC2086
    r=$(taskset -c "$LOADGEN_CORE" "$LOADGEN" --port "$pb" --pub-port "$pa" --server-pid "$pids" $args \
        2>>"$WORK/CL-${setup}-${pub}.loadgen.log" | grep '^RESULT' | tail -1) || true
    [ -n "$r" ] || r="RESULT error=loadgen"
    # what the servers counted: node B (subscribers), node A (publisher)
    mb=$(curl -s "http://127.0.0.1:$pb/metrics" 2>/dev/null || true)
    ma=$mb
    [ "$pa" != "$pb" ] && ma=$(curl -s "http://127.0.0.1:$pa/metrics" 2>/dev/null || true)
    extra=" sub_node_emitted=$(cl_metric "$mb" scopecast_events_emitted_total)"
    extra="$extra sub_node_delivered=$(cl_metric "$mb" scopecast_events_delivered_total)"
    extra="$extra sub_node_dropped=$(cl_metric "$mb" scopecast_events_dropped_total)"
    if [ -n "$url" ]; then
      extra="$extra pub_node_published=$(cl_metric "$ma" scopecast_broker_published_total)"
      extra="$extra pub_node_local=$(cl_metric "$ma" scopecast_broker_local_total)"
      extra="$extra sub_node_received=$(cl_metric "$mb" scopecast_broker_received_total)"
      # Redis's own account of the script (time inside EVAL, per call)
      rinfo=$(redis-cli -p "$rport" info commandstats 2>/dev/null | tr -d '\r' || true)
      extra="$extra redis_eval_calls=$(sed -n 's/^cmdstat_eval:calls=\([0-9]*\),.*/\1/p' <<<"$rinfo" | head -1)"
      extra="$extra redis_eval_usec_per_call=$(sed -n 's/^cmdstat_eval:.*usec_per_call=\([0-9.]*\),.*/\1/p' <<<"$rinfo" | head -1)"
    fi
    r="$r$extra cl_pids=sub_node${na:+,pub_node}${url:+,redis}"
  fi
  stop_server
  if [ -n "$na" ]; then stop_pid "$na"; cl_forget "$na"; fi
  if [ -n "$url" ]; then stop_pid "$REDIS_PID"; cl_forget "$REDIS_PID"; fi
  log "  $r"
  args=${args:-}
  echo "CL $name $(date -u +%FT%TZ) $r args=${args// /,},--pub-port,$([ "$pa" = "$pb" ] && echo same || echo other-node)"
}

run_cl() { # -> the best line of every variant, and the redis-benchmark lines
  local n setup pub line sc key
  local -A clbest clbestsc clruns
  if [ ! -x "$REDIS_SERVER" ]; then
    log "CL: no redis-server ($REDIS_SERVER): skipped"
    echo "CL scopecast/single-ws $(date -u +%FT%TZ) RESULT error=no_redis_server"
    return
  fi
  log "CL: $CL_REPEAT rounds of: $CL_SETUPS x $CL_PUBS (${CL_DURATION} s each)"
  for n in $(seq 1 "$CL_REPEAT"); do
    for pub in $CL_PUBS; do
      for setup in $CL_SETUPS; do
        key=$setup-$pub
        # in this shell, not a $(...): the exit trap must see its processes
        cl_one "$setup" "$pub" >"$WORK/cl-line.txt"
        line=$(cat "$WORK/cl-line.txt")
        sc=$(score HS "$line")
        clruns[$key]="${clruns[$key]:+${clruns[$key]}/}${sc%.*}"
        if [ -z "${clbestsc[$key]:-}" ] || awk -v a="$sc" -v b="${clbestsc[$key]}" 'BEGIN{exit !(a+0>b+0)}'; then
          clbest[$key]=$line
          clbestsc[$key]=$sc
        fi
      done
    done
  done
  for pub in $CL_PUBS; do
    for setup in $CL_SETUPS; do
      key=$setup-$pub
      echo "${clbest[$key]} repeat=$CL_REPEAT runs_deliveries_per_s=${clruns[$key]}"
    done
  done
  cl_redis_bench
}

# redis-benchmark: what one emit costs Redis with the cluster-seq design
# (EVAL of the broker's script: GET and SET EX of the scope's seq and
# epoch keys, PUBLISH) against node-local
# seqs (a plain PUBLISH of the same message), and EVALSHA of the same
# script (the text not sent and hashed on every call). Redis on
# CL_REDIS_BENCH_CORE (SERVER_CORE), the client and two channel
# subscribers (two nodes) on LOADGEN_CORE. Each command: one request at a
# time on one connection (-c 1 -P 1: the round trip, as one WebSocket
# publisher sees it) and 50 connections x 16 pipelined (Redis's
# throughput). Redis's CPU over the run gives the cost per command.
CL_REDIS_BENCH_CORE=${CL_REDIS_BENCH_CORE:-$SERVER_CORE}
CL_RB_N1=${CL_RB_N1:-100000}
CL_RB_NP=${CL_RB_NP:-1000000}
cl_script() { # the broker's Lua script, from server/broker.c
  sed -n '/^static const char SCRIPT\[\] =/,/;$/p' "$ROOT/server/broker.c" | sed '1d' |
    sed -e 's/^[[:space:]]*"//' -e 's/";$//' -e 's/"$//' -e 's/\\n$//' -e 's/\\"/"/g'
}
cl_redis_bench() {
  local rport script sha body cmd mode c p n t0 t1 k0 k1 hz out line subs="" s i epoch=00000000000000ab
  if [ ! -x "$REDIS_BENCHMARK" ]; then
    log "CL: no redis-benchmark (Debian redis-tools): Redis rows skipped"
    return
  fi
  hz=$(getconf CLK_TCK)
  script=$(cl_script)
  if ! grep -q "PUBLISH" <<<"$script"; then
    log "CL: could not read SCRIPT from server/broker.c: Redis rows skipped"
    return
  fi
  rport=$(pick_port 18650)
  cl_start_redis "$rport" "$CL_REDIS_BENCH_CORE" || return
  # two subscribers to the channel (two nodes), reading and discarding
  for i in 1 2; do
    taskset -c "$LOADGEN_CORE" bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
      printf "SUBSCRIBE scopecast:0:events\r\n" >&3; exec cat <&3 >/dev/null' _ "$rport" &
    subs="$subs $!"
    CL_PIDS="$CL_PIDS $!"
  done
  sleep 0.3
  sha=$(redis-cli -p "$rport" script load "$script" | tr -d '\r')
  # a 64-byte event's message on the channel is ~113 bytes ("SEQ E", node
  # and token ids, the scope and data fields); this body is 114
  body=$(printf 'E%032d%081d' 0 0)
  for cmd in publish eval evalsha; do
    for mode in 1 pipelined; do
      if [ "$mode" = 1 ]; then c=1; p=1; n=$CL_RB_N1; else c=50; p=16; n=$CL_RB_NP; fi
      redis-cli -p "$rport" config resetstat >/dev/null
      k0=$(cpu_ticks "$REDIS_PID"); t0=$(date +%s.%N)
      case $cmd in
        publish) out=$(taskset -c "$LOADGEN_CORE" "$REDIS_BENCHMARK" -p "$rport" -c $c -P $p -n "$n" --csv \
                         PUBLISH scopecast:0:events "1 $body" 2>/dev/null) ;;
        eval)    out=$(taskset -c "$LOADGEN_CORE" "$REDIS_BENCHMARK" -p "$rport" -c $c -P $p -n "$n" --csv \
                         EVAL "$script" 2 scopecast:seq:s0 scopecast:epoch:s0 scopecast:0:events 0 86400 "$body" "$epoch" 2>/dev/null) ;;
        evalsha) out=$(taskset -c "$LOADGEN_CORE" "$REDIS_BENCHMARK" -p "$rport" -c $c -P $p -n "$n" --csv \
                         EVALSHA "$sha" 2 scopecast:seq:s0 scopecast:epoch:s0 scopecast:0:events 0 86400 "$body" "$epoch" 2>/dev/null) ;;
      esac
      k1=$(cpu_ticks "$REDIS_PID"); t1=$(date +%s.%N)
      s=$(redis-cli -p "$rport" info commandstats | tr -d '\r' | sed -n "s/^cmdstat_$cmd:.*usec_per_call=\([0-9.]*\),.*/\1/p")
      # the test's name (the script) spans lines and has commas: the figures
      # are the last seven quoted fields
      line=$(tail -n +2 <<<"$out" | tr '\n' ' ' | awk -F'","' -v cmd="$cmd" -v c="$c" -v p="$p" -v n="$n" -v t0="$t0" -v t1="$t1" -v k0="$k0" -v k1="$k1" -v hz="$hz" -v s="$s" '
        NF >= 8 { rps = $(NF - 6); avg = $(NF - 5); p50 = $(NF - 3); p99 = $(NF - 1)
          cpu = (k1 - k0) / hz; wall = t1 - t0
          printf "RESULT command=%s clients=%d pipeline=%d requests=%d ops_per_s=%.0f avg_ms=%s p50_ms=%s p99_ms=%s redis_cpu_pct=%.0f redis_cpu_us_per_op=%.2f redis_usec_per_call=%s\n",
            cmd, c, p, n, rps, avg, p50, p99, 100 * cpu / wall, 1e6 * cpu / n, s }')
      [ -n "$line" ] || line="RESULT error=redis_benchmark command=$cmd"
      log "  redis-benchmark $cmd -c $c -P $p: $line"
      echo "CL scopecast/rb-$cmd-$mode $(date -u +%FT%TZ) $line args=redis-benchmark,-c,$c,-P,$p,-n,$n,body_bytes=${#body}"
    done
  done
  for s in $subs; do kill -TERM "$s" 2>/dev/null || true; wait "$s" 2>/dev/null || true; cl_forget "$s"; done
  stop_pid "$REDIS_PID"; cl_forget "$REDIS_PID"
}

# ---- H1: HTTP publishing, measured with wrk ---------------------------------
H1_CLIENTS=${H1_CLIENTS:-8 64}
H1_BODY=${H1_BODY:-'{"scope":"ch1","data":{"n":1}}'}
export H1_BODY # read by bench/h1_publish.lua

h1_path() { case $1 in scopecast) echo /api/emit ;; *) echo /pub/ch1 ;; esac; }

cpu_ticks() { # pid[,pid...] -> utime+stime, clock ticks
  local p t=0 v
  for p in ${1//,/ }; do
    v=$(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null || true)
    t=$((t + ${v:-0}))
  done
  echo "$t"
}
rss_kb() { # pid[,pid...] -> VmRSS sum
  local p t=0 v
  for p in ${1//,/ }; do
    v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null || true)
    t=$((t + ${v:-0}))
  done
  echo "$t"
}
core_stat() { # -> "busy total" of every core, in order
  awk '/^cpu[0-9]/ { b = $2 + $3 + $4 + $7 + $8 + $9; printf "%d %d ", b, b + $5 + $6 }' /proc/stat
}
tcp_active_opens() { awk '/^Tcp:/ { if (h) print $6; h = 1 }' /proc/net/snmp; }

run_h1() { # server clients -> prints "H1 SERVER/cN DATE RESULT..."
  local srv=$1 c=$2 port n d subpid best="" bestscore=-1 errruns=0 r sc
  local path proto url hz
  path=$(h1_path "$srv")
  proto=raw
  [ "$srv" = scopecast ] && proto=scopecast
  hz=$(getconf CLK_TCK)
  local wargs="-t 1 -c $c --timeout 2s -s $BENCH/h1_publish.lua"
  CUR_SCEN=H1
  if ! command -v wrk >/dev/null 2>&1; then
    echo "H1 $srv/c$c $(date -u +%FT%TZ) RESULT error=no_wrk"
    return
  fi
  for n in $(seq 1 "$REPEAT"); do
    port=$(pick_port 18400)
    if ! start_server "$srv" "$port"; then
      echo "H1 $srv/c$c $(date -u +%FT%TZ) RESULT error=server_start"
      return
    fi
    url="http://127.0.0.1:$port$path"
    d=$WORK/H1-$srv-c$c-$n
    mkdir -p "$d"
    taskset -c "$LOADGEN_CORE" python3 "$BENCH/h1_sub.py" --port "$port" --proto "$proto" \
      >"$d/sub.out" 2>"$d/sub.err" &
    subpid=$!
    SUB_PID=$subpid
    local i ok=0
    for i in $(seq 1 50); do
      if grep -q '^READY' "$d/sub.out" 2>/dev/null; then ok=1; break; fi
      kill -0 "$subpid" 2>/dev/null || break
      sleep 0.1
    done
    if [ $ok != 1 ]; then
      kill -TERM "$subpid" 2>/dev/null || true
      wait "$subpid" 2>/dev/null || true
      SUB_PID=""
      stop_server
      r="RESULT error=subscriber"
      errruns=$((errruns + 1))
      log "  $r: $(tail -2 "$d/sub.err" 2>/dev/null | tr '\n' ' ')"
      [ -n "$best" ] || best=$r
      continue
    fi
    log "H1 $srv c$c (run $n/$REPEAT): wrk $wargs -d ${DURATION}s $url"
    if [ "$WARMUP" != 0 ]; then
      # shellcheck disable=SC2086
      taskset -c "$LOADGEN_CORE" wrk $wargs -d "${WARMUP}s" "$url" >"$d/warmup.out" 2>&1 || true
    fi
    local s0 s1 sub0 sub1 o0 o1 rss0 rss1 cs0 cs1 tm
    s0=$(cpu_ticks "$SRV_PIDS"); sub0=$(cpu_ticks "$subpid"); rss0=$(rss_kb "$SRV_PIDS")
    o0=$(tcp_active_opens); cs0=$(core_stat)
    # wrk's own CPU: bash's time (the child's rusage)
    tm=$( { TIMEFORMAT='%3R %3U %3S'; time taskset -c "$LOADGEN_CORE" wrk $wargs -d "${DURATION}s" "$url" \
             >"$d/wrk.out" 2>&1 || true; } 2>&1 )
    s1=$(cpu_ticks "$SRV_PIDS"); sub1=$(cpu_ticks "$subpid"); rss1=$(rss_kb "$SRV_PIDS")
    o1=$(tcp_active_opens); cs1=$(core_stat)
    sleep 0.5 # the last publishes reach the subscriber
    kill -TERM "$subpid" 2>/dev/null || true
    wait "$subpid" 2>/dev/null || true
    SUB_PID=""
    stop_server
    local w ww
    w=$(sed -n 's/^WRK //p' "$d/wrk.out" | tail -1)
    ww=$(sed -n 's/^WRK //p' "$d/warmup.out" 2>/dev/null | tail -1)
    if [ -z "$w" ]; then
      r="RESULT error=wrk"
      errruns=$((errruns + 1))
      log "  $r: $(tail -3 "$d/wrk.out" | tr '\n' ' ')"
      [ -n "$best" ] || best=$r
      continue
    fi
    r=$(awk -v w="$w" -v ww="$ww" -v sb="$(grep '^SUB ' "$d/sub.out" | tail -1)" \
          -v tm="$tm" -v hz="$hz" -v s0="$s0" -v s1="$s1" -v sub0="$sub0" -v sub1="$sub1" \
          -v o0="$o0" -v o1="$o1" -v rss0="$rss0" -v rss1="$rss1" -v cs0="$cs0" -v cs1="$cs1" \
          -v c="$c" -v path="$path" -v body="${#H1_BODY}" '
      function kv(str, A,   n, i, a, k) {
        n = split(str, a, " ")
        for (i = 1; i <= n; i++) if ((k = index(a[i], "=")) > 0) A[substr(a[i], 1, k - 1)] = substr(a[i], k + 1)
      }
      BEGIN {
        kv(w, W); kv(ww, WW); kv(sb, SB)
        split(tm, T, " "); real = T[1]; wcpu = 100 * (T[2] + T[3]) / real
        secs = W["duration_us"] / 1e6
        scpu = 100 * (s1 - s0) / hz / real; ucpu = 100 * (sub1 - sub0) / hz / real
        nc = split(cs0, A, " "); split(cs1, B, " "); busy = 0; cores = ""
        for (i = 1; i + 1 <= nc; i += 2) {
          tot = B[i + 1] - A[i + 1]; b = tot > 0 ? 100 * (B[i] - A[i]) / tot : 0; busy += b
          cores = cores sprintf(" core%d_busy_pct=%.0f", (i - 1) / 2, b)
        }
        other = busy - scpu - wcpu - ucpu; if (other < 0) other = 0
        sockerr = W["connect_errors"] + W["read_errors"] + W["write_errors"] + W["timeouts"]
        # answered 2xx/3xx over warmup + measurement, against what the
        # subscriber saw (requests still in flight when wrk stops are not
        # counted by wrk: delivered may exceed ok by up to 2 x clients)
        ok = W["requests"] - W["status_errors"] + WW["requests"] - WW["status_errors"]
        printf "RESULT proto=http clients=%d threads=1 path=%s body_bytes=%d seconds=%.2f requests=%d requests_per_s=%.0f", c, path, body, secs, W["requests"], W["requests"] / secs
        printf " status_errors=%d socket_errors=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d", W["status_errors"], sockerr, W["connect_errors"], W["read_errors"], W["write_errors"], W["timeouts"]
        printf " p50_us=%d p99_us=%d p999_us=%d max_us=%d mbytes_in_per_s=%.1f", W["p50_us"], W["p99_us"], W["p999_us"], W["max_us"], W["bytes"] / secs / 1e6
        printf " tcp_connects=%d ok_total=%d delivered=%d sub_dropped=%d sub_closed=%d", o1 - o0, ok, SB["delivered"], SB["dropped"], SB["closed"]
        printf " loadgen_cpu_pct=%.0f wrk_cpu_pct=%.0f sub_cpu_pct=%.0f server_cpu_pct=%.0f server_rss_kb_start=%d server_rss_kb_end=%d other_cpu_pct=%.0f%s\n", wcpu + ucpu, wcpu, ucpu, scpu, rss0, rss1, other, cores
      }')
    log "  $r"
    sc=$(awk -v l=" $r" 'BEGIN {
      n = split(l, a, " "); for (i = 1; i <= n; i++) { k = index(a[i], "="); if (k) F[substr(a[i], 1, k - 1)] = substr(a[i], k + 1) }
      if (F["status_errors"] + F["socket_errors"] > 0 || F["sub_closed"] > 0) print 0; else print F["requests_per_s"] + 0 }')
    [ "$sc" = 0 ] && errruns=$((errruns + 1))
    if [ -z "$best" ] || awk -v a="$sc" -v b="$bestscore" 'BEGIN{exit !(a+0>b+0)}'; then
      best=$r
      bestscore=$sc
    fi
  done
  wargs=${wargs//$BENCH\//bench/}
  echo "H1 $srv/c$c $(date -u +%FT%TZ) $best args=wrk,${wargs// /,},-d,${DURATION}s repeat=$REPEAT runs_with_errors=$errruns"
}

# ---- results file ----------------------------------------------------------
RAW=$WORK/raw.txt
: >"$RAW"
if [ -f "$RESULTS" ]; then
  # keep earlier raw lines (between the markers) except those re-run now
  sed -n '/^<!-- raw-begin -->$/,/^<!-- raw-end -->$/p' "$RESULTS" | grep -E '^(S[0-9]|MC|HS|CL|H[0-9]) ' >"$WORK/old.txt" || true
  sed -n '/^<!-- notes-begin -->$/,/^<!-- notes-end -->$/p' "$RESULTS" | sed '1d;$d' >"$WORK/notes.md" || true
  while read -r line; do
    set -- $line
    case " $want_scen " in *" $1 "*) case " $want_srv " in *" ${2%%/*} "*) continue ;; esac ;; esac
    echo "$line" >>"$RAW"
  done <"$WORK/old.txt"
fi

for s in $want_scen; do
  for srv in $want_srv; do
    if [ "$s" = H1 ]; then
      case " $H1_SERVERS " in *" $srv "*) ;; *) log "H1: $srv has no HTTP publisher here, skipped"; continue ;; esac
      for c in $H1_CLIENTS; do run_h1 "$srv" "$c" >>"$RAW"; done
      continue
    fi
    if [ "$s" = HS ]; then
      [ "$srv" = scopecast ] || continue
      run_hs >>"$RAW"
      continue
    fi
    if [ "$s" = CL ]; then
      [ "$srv" = scopecast ] || continue
      run_cl >>"$RAW"
      continue
    fi
    if [ "$s" = MC ]; then
      [ "$srv" = scopecast ] || continue
      for t in 1 2; do CUR_THREADS=$t run_one MC "scopecast/$t" >>"$RAW"; done
      CUR_THREADS=1
      continue
    fi
    run_one "$s" "$srv" >>"$RAW"
  done
done

# ---- report ------------------------------------------------------------------
machine() {
  local cpu
  cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
  echo "- Machine: $(nproc) cores ($cpu), $(free -g | awk '/^Mem:/{print $2}') GiB, kernel $(uname -r)"
  echo "- Server pinned to core $SERVER_CORE, loadgen to core $LOADGEN_CORE (taskset); loopback only"
  echo "- Versions: scopecast $("$SCOPECAST" --version 2>/dev/null | head -1), $(nginx -v 2>&1 | sed 's/.*: //') + nchan $(dpkg-query -W -f='${Version}' libnginx-mod-nchan 2>/dev/null), mosquitto $(dpkg-query -W -f='${Version}' mosquitto 2>/dev/null), node $(node --version 2>/dev/null), ws $(node -p "require('$BENCH/peers/node/node_modules/ws/package.json').version" 2>/dev/null), uws-pack $(node -p "require('$BENCH/peers/node/node_modules/uws-pack/package.json').version" 2>/dev/null), wrk $(dpkg-query -W -f='${Version}' wrk 2>/dev/null), redis-server $("$REDIS_SERVER" --version 2>/dev/null | sed -n 's/.* v=\([^ ]*\).*/\1/p')"
  echo "- Last run $(date -u '+%Y-%m-%d %H:%M UTC'): \`bench/run.sh $ORIG_ARGS\` (DURATION=$DURATION s, WARMUP=$WARMUP s, REPEAT=$REPEAT$(case " $want_scen " in *" CL "*) echo "; CL: CL_DURATION=$CL_DURATION s, CL_REPEAT=$CL_REPEAT" ;; esac)); each raw line below has its own date"
}

{
  echo "# scopecast benchmark results"
  echo
  echo "Generated by \`bench/run.sh\` (see bench/README.md for method and caveats). Every row"
  echo "comes from one RESULT line of bench/loadgen kept in *Raw results* below;"
  echo "\"× sc\" is this server's figure divided by scopecast's in the same table."
  echo "\`other CPU\` is what the rest of the machine used meanwhile (all cores' busy time"
  echo "minus the server's and the loadgen's, in % of one core): well above 0 means"
  echo "the figures of that row were disturbed. A loadgen above ~90% of its core"
  echo "means the row is a lower bound on the server."
  echo
  machine
  echo
  # a hand-written notes section survives regeneration
  echo '<!-- notes-begin -->'
  if [ -f "$WORK/notes.md" ]; then cat "$WORK/notes.md"; fi
  echo '<!-- notes-end -->'
  echo
  awk -f - "$RAW" <<'AWK'
function val(k,   i) { return (k in F) ? F[k] : "" }
function num(x) { return x + 0 }
function fmtrate(x) { x = num(x); if (x >= 1e6) return sprintf("%.2fM", x/1e6); if (x >= 1e3) return sprintf("%.0fk", x/1e3); return sprintf("%.0f", x) }
function fmtus(x) { x = num(x); if (x >= 1e6) return sprintf("%.2f s", x/1e6); if (x >= 1e3) return sprintf("%.1f ms", x/1e3); return sprintf("%d µs", x) }
function pubof(sc, srv,   p) {
  if (index(get(sc, srv, "args"), "--pub-ws")) return "WS"
  p = get(sc, srv, "proto")
  if (p == "scopecast" || p == "nchan") return "HTTP"
  if (p == "mqtt") return "MQTT"
  return "WS"
}
function ratio(a, b) { if (b == "" || num(b) == 0 || a == "") return "–"; return sprintf("%.2f×", num(a)/num(b)) }
{
  sc = $1; srv = $2
  delete F
  for (i = 5; i <= NF; i++) { n = index($i, "="); if (n) F[substr($i, 1, n-1)] = substr($i, n+1) }
  key = sc SUBSEP srv
  have[key] = 1
  line[key] = $0
  for (k in F) R[key, k] = F[k]
  when[key] = $3
}
function get(sc, srv, k) { return ((sc, srv, k) in R) ? R[sc, srv, k] : "" }
function lossinfo(sc, srv,   s) {
  s = ""
  if (num(get(sc, srv, "drops")) > 0) s = s sprintf("drops %s (%s notices) ", get(sc, srv, "drops"), get(sc, srv, "drop_notices"))
  if (num(get(sc, srv, "gaps")) > 0) s = s "gaps " get(sc, srv, "gaps") " "
  if (num(get(sc, srv, "lost")) > 0) s = s "lost " get(sc, srv, "lost") " "
  if (num(get(sc, srv, "closed")) > 0) s = s "closed " get(sc, srv, "closed") " "
  if (num(get(sc, srv, "errors")) + num(get(sc, srv, "pub_errors")) > 0) s = s "errors " (num(get(sc, srv, "errors")) + num(get(sc, srv, "pub_errors")))
  return s == "" ? "none" : s
}
function throughput(sc, title, n,   i, srv, base) {
  print "## " title; print ""
  print "| server | deliveries/s | × sc | events/s | MB/s | p50 | p99 | p99.9 | max | window/batch | pub | loss | loadgen CPU | server CPU | other CPU |"
  print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|---:|---:|---:|"
  base = get(sc, "scopecast", "deliveries_per_s")
  for (i = 1; i <= n; i++) {
    srv = S[i]
    if (!((sc, srv) in have)) continue
    if (get(sc, srv, "error") != "") { printf "| %s | error: %s |\n", name[srv], get(sc, srv, "error"); continue }
    printf "| %s | %s | %s | %s | %.1f | %s | %s | %s | %s | %s/%s | %s | %s | %s%% | %s%% | %s%% |\n", name[srv],
      fmtrate(get(sc, srv, "deliveries_per_s")), ratio(get(sc, srv, "deliveries_per_s"), base),
      fmtrate(get(sc, srv, "events_per_s")), num(get(sc, srv, "mbytes_per_s")),
      fmtus(get(sc, srv, "p50_us")), fmtus(get(sc, srv, "p99_us")), fmtus(get(sc, srv, "p999_us")), fmtus(get(sc, srv, "max_us")),
      get(sc, srv, "window"), get(sc, srv, "batch"), pubof(sc, srv), lossinfo(sc, srv),
      get(sc, srv, "loadgen_cpu_pct"), get(sc, srv, "server_cpu_pct"), get(sc, srv, "other_cpu_pct")
  }
  print ""
}
function latency(sc, title, n, stall,   i, srv, base) {
  print "## " title; print ""
  if (stall)
    print "| server | deliveries/s | p50 | p99 | × sc (p99) | p99.9 | max | pub | server RSS start → end | loss (others) | loadgen CPU | server CPU | other CPU |"
  else
    print "| server | deliveries/s | p50 | p99 | × sc (p99) | p99.9 | max | pub | loss | loadgen CPU | server CPU | other CPU |"
  if (stall) print "|---|---:|---:|---:|---:|---:|---:|---|---|---|---:|---:|---:|"
  else print "|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|"
  base = get(sc, "scopecast", "p99_us")
  for (i = 1; i <= n; i++) {
    srv = S[i]
    if (!((sc, srv) in have)) continue
    if (get(sc, srv, "error") != "") { printf "| %s | error: %s |\n", name[srv], get(sc, srv, "error"); continue }
    printf "| %s | %s | %s | %s | %s | %s | %s |", name[srv], fmtrate(get(sc, srv, "deliveries_per_s")),
      fmtus(get(sc, srv, "p50_us")), fmtus(get(sc, srv, "p99_us")), ratio(get(sc, srv, "p99_us"), base),
      fmtus(get(sc, srv, "p999_us")), fmtus(get(sc, srv, "max_us"))
    printf " %s |", pubof(sc, srv)
    if (stall) printf " %.1f → %.1f MB |", num(get(sc, srv, "server_rss_kb_start"))/1024, num(get(sc, srv, "server_rss_kb_end"))/1024
    printf " %s | %s%% | %s%% | %s%% |\n", lossinfo(sc, srv), get(sc, srv, "loadgen_cpu_pct"), get(sc, srv, "server_cpu_pct"), get(sc, srv, "other_cpu_pct")
  }
  print ""
}
function memory(sc, title, n,   i, srv, base) {
  print "## " title; print ""
  print "| server | connections | RSS before | RSS after | bytes/connection | × sc |"
  print "|---|---:|---:|---:|---:|---:|"
  base = get(sc, "scopecast", "bytes_per_conn")
  for (i = 1; i <= n; i++) {
    srv = S[i]
    if (!((sc, srv) in have)) continue
    if (get(sc, srv, "error") != "") { printf "| %s | error: %s |\n", name[srv], get(sc, srv, "error"); continue }
    printf "| %s | %s | %.1f MB | %.1f MB | %.0f | %s |\n", name[srv], get(sc, srv, "subs"),
      num(get(sc, srv, "rss_before_kb"))/1024, num(get(sc, srv, "rss_after_kb"))/1024,
      num(get(sc, srv, "bytes_per_conn")), ratio(get(sc, srv, "bytes_per_conn"), base)
  }
  print ""
}
function h1table(sc, title,   i, j, k, n, m, nc, srv, key, base, rate, bad, miss, dl, C, CL, tmp, pfx) {
  nc = 0
  for (key in have) { split(key, k2, SUBSEP); if (k2[1] != sc) continue
    split(k2[2], p2, "/c"); if (!(p2[2] in CL)) { CL[p2[2]] = 1; C[++nc] = p2[2] + 0 } }
  if (nc == 0) return
  for (i = 2; i <= nc; i++) { tmp = C[i]; for (j = i - 1; j >= 1 && C[j] > tmp; j--) C[j + 1] = C[j]; C[j + 1] = tmp }
  print "## " title; print ""
  print "| server | clients | requests/s | × sc | p50 | p99 | p99.9 | max | non-2xx | socket errors | TCP connects | delivered | wrk + sub CPU | server CPU | other CPU |"
  print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"
  m = split("scopecast uws nchan", H, " ")
  for (j = 1; j <= nc; j++) {
    base = ""
    pfx = "scopecast/c" C[j]
    if ((sc, pfx) in have && get(sc, pfx, "error") == "" && num(get(sc, pfx, "status_errors")) + num(get(sc, pfx, "socket_errors")) == 0)
      base = get(sc, pfx, "requests_per_s")
    for (i = 1; i <= m; i++) {
      srv = H[i] "/c" C[j]
      if (!((sc, srv) in have)) continue
      if (get(sc, srv, "error") != "") { printf "| %s | %s | error: %s |\n", name[H[i]], C[j], get(sc, srv, "error"); continue }
      bad = num(get(sc, srv, "status_errors")) + num(get(sc, srv, "socket_errors")) > 0
      # a run with error answers or broken connections gets no rate
      rate = bad ? sprintf("**errors** (%s answers)", fmtrate(get(sc, srv, "requests"))) : fmtrate(get(sc, srv, "requests_per_s"))
      miss = num(get(sc, srv, "ok_total")) - num(get(sc, srv, "delivered"))
      dl = "all"
      if (num(get(sc, srv, "sub_closed")) > 0) dl = "**subscriber closed**"
      else if (miss > 0) dl = sprintf("**%d missing**", miss)
      if (num(get(sc, srv, "sub_dropped")) > 0) dl = dl sprintf(" (%s dropped notices)", get(sc, srv, "sub_dropped"))
      printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s%% | %s%% | %s%% |\n", name[H[i]], C[j],
        rate, bad ? "–" : ratio(get(sc, srv, "requests_per_s"), base),
        fmtus(get(sc, srv, "p50_us")), fmtus(get(sc, srv, "p99_us")), fmtus(get(sc, srv, "p999_us")), fmtus(get(sc, srv, "max_us")),
        get(sc, srv, "status_errors"), get(sc, srv, "socket_errors"), get(sc, srv, "tcp_connects"), dl,
        get(sc, srv, "loadgen_cpu_pct"), get(sc, srv, "server_cpu_pct"), get(sc, srv, "other_cpu_pct")
    }
  }
  print ""
}
function multicore(sc, title,   t, srv, cpu, rate) {
  if (!((sc, "scopecast/1") in have)) return
  print "## " title; print ""
  print "| service threads | cores allowed | deliveries/s | server CPU | CPU-s per million deliveries | loadgen CPU |"
  print "|---:|---|---:|---:|---:|---:|"
  for (t = 1; t <= 2; t++) {
    srv = "scopecast/" t
    if (!((sc, srv) in have)) continue
    cpu = num(get(sc, srv, "server_cpu_pct")) / 100; rate = num(get(sc, srv, "deliveries_per_s")) / 1e6
    printf "| %d | %s | %s | %s%% | %s | %s%% |\n", t, (t == 1 ? "1 (its own)" : "2 (one shared with the loadgen)"),
      fmtrate(get(sc, srv, "deliveries_per_s")), get(sc, srv, "server_cpu_pct"),
      (rate > 0 ? sprintf("%.4f", cpu / rate) : "–"), get(sc, srv, "loadgen_cpu_pct")
  }
  print ""
}
function historycost(sc, title,   i, v, srv, cpu, rate, base) {
  if (!((sc, "scopecast/plain") in have)) return
  print "## " title; print ""
  print "| scopecast | deliveries/s | × without | server CPU | CPU-s per million deliveries | loadgen CPU | loss |"
  print "|---|---:|---:|---:|---:|---:|---|"
  base = get(sc, "scopecast/plain", "deliveries_per_s")
  split("plain history", V, " ")
  for (i = 1; i <= 2; i++) {
    srv = "scopecast/" V[i]
    if (!((sc, srv) in have)) continue
    if (get(sc, srv, "error") != "") { printf "| %s | error: %s |\n", V[i], get(sc, srv, "error"); continue }
    cpu = num(get(sc, srv, "server_cpu_pct")) / 100; rate = num(get(sc, srv, "deliveries_per_s")) / 1e6
    printf "| %s | %s | %s | %s%% | %s | %s%% | %s |\n", (i == 1 ? "without history" : "`--history '*=500'`"),
      fmtrate(get(sc, srv, "deliveries_per_s")), ratio(get(sc, srv, "deliveries_per_s"), base),
      get(sc, srv, "server_cpu_pct"), (rate > 0 ? sprintf("%.4f", cpu / rate) : "–"),
      get(sc, srv, "loadgen_cpu_pct"), lossinfo(sc, srv)
  }
  print ""
}
function clcpu(sc, srv, who,   i, n, m, N, V) {
  # server_cpu_pcts lists each --server-pid's CPU in the order of cl_pids
  if (get(sc, srv, "cl_pids") == "sub_node" || get(sc, srv, "server_cpu_pcts") == "")
    return who == "sub_node" ? get(sc, srv, "server_cpu_pct") "%" : "–"
  n = split(get(sc, srv, "cl_pids"), N, ","); m = split(get(sc, srv, "server_cpu_pcts"), V, ",")
  for (i = 1; i <= n && i <= m; i++) if (N[i] == who) return V[i] "%"
  return "–"
}
function clloss(sc, srv,   s, took, subs, unread, rest) {
  s = lossinfo(sc, srv)
  if (s == "none" || num(get(sc, srv, "drops")) + num(get(sc, srv, "gaps")) + num(get(sc, srv, "sub_node_dropped")) > 0) return s
  # "lost" = deliveries still unseen when the drain ended. With no gap and
  # no drop anywhere, split it: events the publisher wrote that the server
  # had not read yet (a WebSocket's emits wait for Redis one by one), and
  # events it took that were still on their way
  took = num(get(sc, srv, "sub_node_emitted")); subs = num(get(sc, srv, "subs"))
  unread = num(get(sc, srv, "events_sent")) - took
  if (took <= 0 || unread < 0) return s
  rest = num(get(sc, srv, "lost")) - unread * subs
  return sprintf("no gap, no drop; %s unseen at the end: %d events still unread by the server (backlog)%s", get(sc, srv, "lost"), unread,
    rest > 0 ? sprintf(", %d deliveries in flight", rest) : "")
}
function cltable(sc, title,   i, j, k, x, P, U, L, RR, C, M, srv, base, rs, cl) {
  if (!((sc, "scopecast/single-ws") in have) && !((sc, "scopecast/broker1-ws") in have) && !((sc, "scopecast/single-http") in have)) return
  print "## " title; print ""
  print "| setup | publisher | deliveries/s (best) | × (a) | runs | events/s | p50 | p99 | loss | CPU: node with subscribers | node A | Redis | loadgen | other | EVAL µs in Redis |"
  print "|---|---|---:|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"
  split("ws http", P, " "); split("single broker1 broker2", U, " ")
  L["single"] = "(a) one node, no broker"; L["broker1"] = "(b) one node, `--broker`"; L["broker2"] = "(c) two nodes: publisher on A, subscribers on B"
  for (j = 1; j <= 2; j++) {
    base = get(sc, "scopecast/single-" P[j], "deliveries_per_s")
    for (i = 1; i <= 3; i++) {
      srv = "scopecast/" U[i] "-" P[j]
      if (!((sc, srv) in have)) continue
      cl = P[j] == "ws" ? "WS emits, window/batch " get(sc, srv, "window") "/" get(sc, srv, "batch") : "HTTP batch " get(sc, srv, "batch") " (window " get(sc, srv, "window") ")"
      if (get(sc, srv, "error") != "") { printf "| %s | %s | error: %s |\n", L[U[i]], cl, get(sc, srv, "error"); continue }
      rs = get(sc, srv, "runs_deliveries_per_s"); k = split(rs, RR, "/"); rs = ""
      for (x = 1; x <= k; x++) rs = rs (x > 1 ? ", " : "") fmtrate(RR[x])
      printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s%% | %s%% | %s |\n", L[U[i]], cl,
        fmtrate(get(sc, srv, "deliveries_per_s")), ratio(get(sc, srv, "deliveries_per_s"), base), rs,
        fmtrate(get(sc, srv, "events_per_s")), fmtus(get(sc, srv, "p50_us")), fmtus(get(sc, srv, "p99_us")),
        clloss(sc, srv), clcpu(sc, srv, "sub_node"), clcpu(sc, srv, "pub_node"), clcpu(sc, srv, "redis"),
        get(sc, srv, "loadgen_cpu_pct"), get(sc, srv, "other_cpu_pct"),
        get(sc, srv, "redis_eval_usec_per_call") == "" ? "–" : get(sc, srv, "redis_eval_usec_per_call")
    }
  }
  print ""
  if (!((sc, "scopecast/rb-publish-1") in have)) return
  print "### CL — Redis alone (redis-benchmark): a plain PUBLISH against EVAL of the broker's script"
  print ""
  print "| command | clients × pipeline | ops/s | × PUBLISH | avg | p99 | Redis CPU | Redis CPU µs/op | µs in the command (INFO) |"
  print "|---|---|---:|---:|---:|---:|---:|---:|---:|"
  split("publish eval evalsha", C, " "); split("1 pipelined", M, " ")
  L["publish"] = "`PUBLISH` (node-local seqs)"; L["eval"] = "`EVAL` script: seq and epoch keys GET + SET EX, PUBLISH (cluster seq and epoch, as the broker sends it)"; L["evalsha"] = "`EVALSHA` of the same script"
  for (j = 1; j <= 2; j++) {
    base = get(sc, "scopecast/rb-publish-" M[j], "ops_per_s")
    for (i = 1; i <= 3; i++) {
      srv = "scopecast/rb-" C[i] "-" M[j]
      if (!((sc, srv) in have)) continue
      if (get(sc, srv, "error") != "") { printf "| %s | error: %s |\n", L[C[i]], get(sc, srv, "error"); continue }
      printf "| %s | %s × %s | %s | %s | %s ms | %s ms | %s%% | %s | %s |\n", L[C[i]], get(sc, srv, "clients"), get(sc, srv, "pipeline"),
        fmtrate(get(sc, srv, "ops_per_s")), ratio(get(sc, srv, "ops_per_s"), base), get(sc, srv, "avg_ms"), get(sc, srv, "p99_ms"),
        get(sc, srv, "redis_cpu_pct"), get(sc, srv, "redis_cpu_us_per_op"), get(sc, srv, "redis_usec_per_call")
    }
  }
  print ""
}
END {
  n = split("scopecast uws nchan nodews mosquitto", S, " ")
  name["scopecast"] = "scopecast"; name["uws"] = "uWebSockets.js (uws-pack)"; name["nchan"] = "nginx + nchan"
  name["nodews"] = "Node ws"; name["mosquitto"] = "mosquitto (MQTT/WS)"
  throughput("S1", "S1 — saturation: 1 scope × 1000 subscribers × 64-byte events", n)
  throughput("S2", "S2 — 1000 scopes × 10 subscribers (10,000 connections)", n)
  latency("S3", "S3 — latency at a fixed 100k deliveries/s (100 events/s × 1000 subscribers)", n, 0)
  latency("S4", "S4 — S3 with one subscriber that stopped reading", n, 1)
  memory("S5", "S5 — 10,000 idle subscribed connections", n)
  throughput("S6", "S6 — 16 KB events, 1 scope × 1000 subscribers", n)
  multicore("MC", "MC — multi-core efficiency: S1's load, scopecast with 1 and 2 service threads")
  historycost("HS", "HS — the cost of history: S1's load without and with every event kept (500 per scope), alternated")
  cltable("CL", "CL — the Redis broker: S1's load on one node, through Redis, across two nodes (alternated)")
  h1table("H1", "H1 — HTTP publishing: one small JSON event per keep-alive request (wrk, 1 thread)")
}
AWK
  echo "## Raw results"
  echo
  echo "One line per scenario and server: the loadgen's RESULT line, its arguments."
  echo
  echo '<!-- raw-begin -->'
  echo '```text'
  sort -k1,1 -k2,2 "$RAW"
  echo '```'
  echo '<!-- raw-end -->'
} >"$WORK/RESULTS.md"
cp "$WORK/RESULTS.md" "$RESULTS"
log "wrote $RESULTS"
