# What the real-browser test (tests/tests/browser.rs -> tests/browser/checkout.mjs) needs:
# Debian's chromium and the npm package playwright-core. Source it from the workspace root; it
# defines functions only.
#
#   . scripts/browser.sh && ensure_browser_tools
#
# Idempotent and quiet: it prints one line per thing it installs, nothing when all is there.
# Node.js and npm come with the machine; Playwright cannot download its own browser builds here,
# so the test drives /usr/bin/chromium (or $ORDERFLOW_CHROMIUM) through playwright-core.

# Runs a command as root: directly when we are root, through sudo otherwise.
_browser_as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "error: installing chromium needs root (or sudo): $*" >&2
    return 1
  fi
}

ensure_browser_tools() {
  local dir=tests/browser
  if [ ! -f "$dir/package.json" ]; then
    echo "error: ensure_browser_tools runs from the workspace root ($dir/package.json not found in $PWD)" >&2
    return 1
  fi

  if [ -z "${ORDERFLOW_CHROMIUM:-}" ] && [ ! -x /usr/bin/chromium ]; then
    echo "==> installing Debian's chromium (for the browser test)"
    local log
    log=$(mktemp -t orderflow-apt.XXXXXX.log)
    if ! { _browser_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q \
           && _browser_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
                --no-install-recommends chromium; } >"$log" 2>&1; then
      cat "$log" >&2
      rm -f "$log"
      echo "error: could not install chromium with apt-get" >&2
      return 1
    fi
    rm -f "$log"
  fi

  if [ ! -f "$dir/node_modules/playwright-core/package.json" ]; then
    if ! command -v npm >/dev/null 2>&1; then
      echo "error: npm is required for the browser test (Node.js 18 or newer with npm)" >&2
      return 1
    fi
    echo "==> installing playwright-core into $dir/node_modules (npm ci)"
    # playwright-core never downloads browsers on install; the variable only makes that explicit.
    if ! PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error \
         --prefix "$dir" >/dev/null; then
      echo "error: npm ci --prefix $dir failed" >&2
      return 1
    fi
  fi
}
