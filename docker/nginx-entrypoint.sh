#!/bin/sh
# nginx for the scopecast cluster (docker/nginx.Dockerfile). nginx resolves
# its upstreams (node-a, node-b) once, when it loads its configuration, and
# a restarted or recreated node may come back at another address (podman
# gives a restarted container a new one): nginx would keep sending to the
# old one. So this watches the names every 2 s and reloads nginx when an
# address changes (a reload keeps open connections on the old workers until
# they close; a configuration that does not load is logged and the old one
# kept). Arguments go to nginx.
set -u
NAMES=${NGINX_UPSTREAM_NAMES:-node-a node-b}

addresses() {
  for n in $NAMES; do printf '%s=%s ' "$n" "$(getent ahostsv4 "$n" | awk 'NR == 1 { print $1 }')"; done
}

# -e stderr: no attempt at /var/log/nginx/error.log before the config is read
nginx -e stderr -g 'daemon off;' "$@" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null' TERM INT
trap 'kill -QUIT "$pid" 2>/dev/null' QUIT
last=$(addresses)
while kill -0 "$pid" 2>/dev/null; do
  sleep 2 &
  wait $! # a signal interrupts the wait, not a foreground sleep
  now=$(addresses)
  if [ "$now" != "$last" ] && ! printf '%s' "$now" | grep -q '= '; then
    echo "nginx-entrypoint: upstream addresses now $now: reloading" >&2
    nginx -e stderr -s reload && last=$now
  fi
done
wait "$pid"
