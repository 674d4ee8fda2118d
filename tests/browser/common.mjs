// What the real-browser scripts (checkout.mjs, ui_query.mjs) share: reading their --flags, the
// deadline of --timeout-ms, starting Debian's chromium (/usr/bin/chromium, or
// $ORDERFLOW_CHROMIUM) through playwright-core with a temporary profile, and `runMain`: the
// watchdog, the failure screenshot, the one JSON line on stdout, the message on stderr, the exit
// code, and closing the browser and removing its profile in every case.

import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  // Debian's wrapper adds this only when /dev/shm is small, and its check can misfire; a
  // container's 64 MB /dev/shm would otherwise crash the renderer.
  '--disable-dev-shm-usage',
];
const INSTALL_HINT =
  'install the browser tools with `. scripts/browser.sh && ensure_browser_tools` from the ' +
  'workspace root (scripts/test.sh does this), or by hand: `apt-get install chromium` and ' +
  '`npm ci --prefix tests/browser`';

/** When the script started: --timeout-ms counts from here. */
export const started = Date.now();

/** A check that failed: its message is the whole story (no stack trace). */
export class Failure extends Error {}
export const fail = (message) => {
  throw new Failure(message);
};

/**
 * Reads `--flag value` and `--flag=value` from `argv`. `names` maps each flag to its option's key;
 * `set(key, value, flag)` stores each one. `--help`/`-h` prints `usage()` and exits 0; an unknown
 * flag, or one without a value, fails with `usage()`.
 */
export function parseFlags(argv, names, usage, set) {
  for (let i = 0; i < argv.length; i++) {
    let [flag, value] = argv[i].split(/=(.*)/s, 2);
    if (flag === '--help' || flag === '-h') {
      console.error(usage());
      process.exit(0);
    }
    const key = names[flag];
    if (!key) fail(`unknown argument ${argv[i]}\n${usage()}`);
    if (value === undefined) {
      if (i + 1 >= argv.length) fail(`${flag} needs a value\n${usage()}`);
      value = argv[++i];
    }
    set(key, value, flag);
  }
}

/** The value of --timeout-ms as a number; fails unless it is a positive integer. */
export function parseTimeoutMs(value) {
  const timeoutMs = Number(value);
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) {
    fail(`--timeout-ms must be a positive integer of milliseconds`);
  }
  return timeoutMs;
}

/**
 * `timeoutMs` after `started`: `{ deadline, left }`, where `left(what)` is the milliseconds still
 * left, and fails ("timed out ... before <what>") once there are none.
 */
function deadlineOf(timeoutMs) {
  const deadline = started + timeoutMs;
  const left = (what) => {
    const ms = deadline - Date.now();
    if (ms <= 0) fail(`timed out after ${timeoutMs} ms before ${what}`);
    return ms;
  };
  return { deadline, left };
}

async function loadPlaywright() {
  try {
    return await import('playwright-core');
  } catch (e) {
    fail(`cannot load playwright-core (${e.code || e.message}): ${INSTALL_HINT}`);
  }
}

function chromiumPath() {
  const bin = process.env.ORDERFLOW_CHROMIUM || '/usr/bin/chromium';
  try {
    fs.accessSync(bin, fsConstants.X_OK);
  } catch {
    fail(`no executable chromium at ${bin}: ${INSTALL_HINT}`);
  }
  return bin;
}

/**
 * Starts headless chromium with a fresh temporary profile (`state.profile`, `state.context`) and
 * the launch `options` given (viewport, ...), records its version in `seen.chromium`, and returns
 * its page (also `state.page`).
 */
export async function openPage(state, seen, left, options) {
  const { chromium } = await loadPlaywright();
  const executablePath = chromiumPath();
  state.profile = fs.mkdtempSync(path.join(os.tmpdir(), 'orderflow-chromium-'));
  try {
    state.context = await chromium.launchPersistentContext(state.profile, {
      executablePath,
      headless: true,
      args: CHROMIUM_ARGS,
      ...options,
      timeout: Math.min(left('chromium started'), 30_000),
    });
  } catch (e) {
    fail(`chromium (${executablePath}) did not start: ${e.message.split('\n')[0]}. ${INSTALL_HINT}`);
  }
  seen.chromium = state.context.browser()?.version() ?? null;

  const page = state.context.pages()[0] ?? (await state.context.newPage());
  state.page = page;
  return page;
}

/** The full-page screenshot at `opts.screenshot`, recorded in `seen`. */
export async function saveScreenshot(page, opts, seen, left) {
  fs.mkdirSync(path.dirname(opts.screenshot), { recursive: true });
  await page.screenshot({ path: opts.screenshot, fullPage: true, timeout: left('the screenshot') });
  seen.screenshot = opts.screenshot;
  seen.screenshot_bytes = fs.statSync(opts.screenshot).size;
}

function failureShot(screenshot) {
  return screenshot.replace(/\.png$/i, '') + '.failure.png';
}

async function closeAll(state) {
  if (state.context) {
    const context = state.context;
    state.context = null;
    // Closing normally takes well under a second; never hang on it.
    await Promise.race([
      context.close().catch(() => {}),
      new Promise((resolve) => setTimeout(resolve, 10_000).unref()),
    ]);
  }
  if (state.profile) {
    fs.rmSync(state.profile, { recursive: true, force: true, maxRetries: 3 });
    state.profile = null;
  }
}

/**
 * The whole of a script: `opts = parseArgs(argv)`, `record(opts)` (what `seen` shows of them),
 * then `run(opts, state, { deadline, left })` (see `deadlineOf`) under a watchdog of
 * `opts.timeoutMs + 20 s`. Prints `seen` as one JSON
 * line on stdout (`ok` true, or false with `error`), on failure also `<script>: FAILED: ...` on
 * stderr and `<png path without .png>.failure.png` when a page was open; closes the browser,
 * removes its profile, and exits 0, 1 (failed) or 3 (the watchdog).
 */
export async function runMain({ script, seen, parseArgs, record, run }) {
  const state = { context: null, page: null, profile: null };
  let opts;
  let code = 0;
  // Last resort: whatever hangs, the process ends. Exiting kills the browser (Playwright kills
  // the processes it launched when node exits) and the exit hook removes the profile.
  const watchdog = { timer: null };
  process.on('exit', () => {
    if (state.profile) fs.rmSync(state.profile, { recursive: true, force: true });
  });
  try {
    opts = parseArgs(process.argv.slice(2));
    record(opts);
    watchdog.timer = setTimeout(() => {
      const message = `${script}: FAILED: still running ${opts.timeoutMs + 20_000} ms after start; giving up`;
      process.stdout.write(JSON.stringify({ ...seen, ok: false, error: message }) + '\n');
      console.error(message);
      process.exit(3);
    }, opts.timeoutMs + 20_000);
    watchdog.timer.unref();
    await run(opts, state, deadlineOf(opts.timeoutMs));
    seen.ok = true;
  } catch (e) {
    code = 1;
    seen.ok = false;
    seen.error = e instanceof Failure ? e.message : `unexpected error: ${e.stack || e}`;
    if (state.page && opts) {
      const shot = failureShot(opts.screenshot);
      try {
        fs.mkdirSync(path.dirname(shot), { recursive: true });
        await state.page.screenshot({ path: shot, fullPage: true, timeout: 5_000 });
        seen.failure_screenshot = shot;
      } catch {
        // the page may be gone; the message says what happened
      }
    }
  } finally {
    await closeAll(state);
  }
  seen.elapsed_ms = Date.now() - started;
  // Lists of what went wrong on the page: left out when nothing did.
  if (seen.page_errors?.length === 0) delete seen.page_errors;
  if (seen.console_errors?.length === 0) delete seen.console_errors;
  if (seen.failed_responses?.length === 0) delete seen.failed_responses;
  process.stdout.write(JSON.stringify(seen) + '\n');
  if (code !== 0) {
    const where = seen.failure_screenshot ? ` (screenshot: ${seen.failure_screenshot})` : '';
    console.error(`${script}: FAILED: ${seen.error}${where}`);
  }
  clearTimeout(watchdog.timer);
  // stdout and stderr are synchronous for files and pipes on Linux: nothing is lost by exiting
  // now, and nothing left behind by a library can keep the process alive.
  process.exit(code);
}

/** Reads the text of the page's single `selector` element (fails if there is not exactly one). */
export function textReader(page, left) {
  return async (selector) => {
    const el = page.locator(selector);
    if ((await el.count()) !== 1) fail(`the page has no single ${selector} element`);
    return (await el.innerText({ timeout: left(`reading ${selector}`) })).trim();
  };
}

/**
 * The page's `#countdown` runs: it shows "<m>m <ss>s" and counts down within a few seconds.
 * Returns the two readings.
 */
export async function expectRunningCountdown(page, left) {
  const text = textReader(page, left);
  const countdownPattern = /^\d+m \d{2}s$/;
  const first = await text('#countdown');
  if (!countdownPattern.test(first)) {
    fail(`#countdown shows ${JSON.stringify(first)}, expected a running "<m>m <ss>s" countdown`);
  }
  try {
    await page.waitForFunction(
      (before) => document.getElementById('countdown')?.textContent?.trim() !== before,
      first,
      { timeout: Math.min(left('the countdown ticked'), 5_000), polling: 100 },
    );
  } catch {
    fail(`#countdown stayed at ${JSON.stringify(first)} for 5 s: it is not running`);
  }
  const second = await text('#countdown');
  if (!countdownPattern.test(second)) {
    fail(`#countdown went from ${JSON.stringify(first)} to ${JSON.stringify(second)}`);
  }
  const secs = (s) => s.match(/^(\d+)m (\d+)s$/).slice(1).map(Number).reduce((m, x) => m * 60 + x);
  if (!(secs(second) < secs(first))) {
    fail(`#countdown went up, from ${first} to ${second}`);
  }
  return [first, second];
}
