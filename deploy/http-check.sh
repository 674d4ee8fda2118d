#!/bin/bash
# orderflow-http-check PORT PATH: exit 0 only if GET http://127.0.0.1:PORT/PATH answers 200.
#
# The container healthchecks of `orderflow-worker` (its Prometheus endpoint) and `orderflow serve`
# (/readyz) use this instead of curl: the runtime image stays debian:bookworm-slim with
# ca-certificates only, and bash, which slim already has, speaks enough HTTP for one status
# line. No curl means no libcurl and its TLS/LDAP/SSH dependencies to patch in every image.
set -euo pipefail

port=${1:?usage: orderflow-http-check PORT [PATH]}
path=${2:-/}

# Connection refused fails the `exec` (and the check) at once; a hung server is bounded by
# `read -t` here and by the healthcheck's own timeout.
exec 3<>"/dev/tcp/127.0.0.1/${port}"
printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' "$path" "$port" >&3
IFS= read -r -t 5 status_line <&3
exec 3<&-

case "$status_line" in
  "HTTP/1."?" 200"*) exit 0 ;;
  *)
    echo "GET ${path} on port ${port}: ${status_line:-no answer}" >&2
    exit 1
    ;;
esac
