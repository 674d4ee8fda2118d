# What the real-browser test (tests/tests/browser.rs -> tests/browser/checkout.mjs) needs:
# Debian's chromium and the npm package playwright-core. Source it from the workspace root; it
# defines functions only, and needs scripts/lib.sh (apt_install) sourced first.
#
#   . scripts/browser.sh && ensure_browser_tools
#
# Idempotent and quiet: it prints one line per thing it installs, nothing when all is there.
# Node.js and npm come with the machine; Playwright cannot download its own browser builds here,
# so the test drives /usr/bin/chromium (or $ORDERFLOW_CHROMIUM) through playwright-core.

ensure_browser_tools() {
  local dir=tests/browser
  if [ ! -f "$dir/package.json" ]; then
    echo "error: ensure_browser_tools runs from the workspace root ($dir/package.json not found in $PWD)" >&2
    return 1
  fi

  if [ -z "${ORDERFLOW_CHROMIUM:-}" ] && [ ! -x /usr/bin/chromium ]; then
    apt_install "for the browser test" chromium || return 1
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
