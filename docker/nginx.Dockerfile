# nginx in front of the scopecast cluster (docker/compose.yml): Debian 12's
# nginx with docker/nginx.conf, run as www-data on port 8080 (no root, so
# no port below 1024), logs on stdout/stderr. Built from debian:12:
#   podman build --format docker -f docker/nginx.Dockerfile -t scopecast-nginx docker
# The upstream names node-a and node-b must resolve (the compose network's
# DNS); nginx-entrypoint.sh reloads nginx when their addresses change.
FROM debian:12
# policy-rc.d: the package's scripts must not start a server during the build
RUN printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \
 && apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null \
 && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/* \
 && mkdir -p /tmp/nginx && chown www-data:www-data /tmp/nginx
COPY nginx.conf /etc/nginx/nginx.conf
COPY nginx-entrypoint.sh /usr/local/bin/nginx-entrypoint
RUN chmod 755 /usr/local/bin/nginx-entrypoint
USER www-data
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s \
  CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /nginx-healthz HTTP/1.0\\r\\n\\r\\n' >&3 && read -r _ code _ <&3 && [ \"$code\" = 200 ]"]
ENTRYPOINT ["/usr/local/bin/nginx-entrypoint"]
