# Redis for the scopecast cluster (docker/compose.yml): Debian 12's
# redis-server, run as the redis user, no persistence (the broker keeps
# only each scope's next seq; a restarted Redis starts them again).
# Built from debian:12, not Docker Hub's redis image:
#   podman build --format docker -f docker/redis.Dockerfile -t scopecast-redis docker
# It listens on every address of the container with protected mode off, so
# publish it nowhere: in the compose it is reachable on the compose network
# only (as redis:6379).
FROM debian:12
# policy-rc.d: the package's scripts must not start a server during the build
RUN printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \
 && apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null \
 && rm -rf /var/lib/apt/lists/*
USER redis
WORKDIR /var/lib/redis
EXPOSE 6379
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s \
  CMD ["/bin/sh", "-c", "[ \"$(redis-cli -h 127.0.0.1 -p 6379 ping)\" = PONG ]"]
ENTRYPOINT ["redis-server"]
# --save "" and --appendonly no: nothing written to disk
CMD ["--bind", "0.0.0.0", "--port", "6379", "--protected-mode", "no", \
     "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis", "--loglevel", "notice"]
