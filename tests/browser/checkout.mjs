#!/usr/bin/env node
// A real browser at the sandbox checkout page (http/src/checkout.rs), as a customer:
// open the page, see the amount and a running countdown, click Pay, wait for the order's final
// status to appear in #result, and take a full-page screenshot.
//
//   node tests/browser/checkout.mjs --url <checkout url> --screenshot <png path>
//        [--expect PAID] [--amount "39.98 USD"] [--timeout-ms 60000]
//
// Drives Debian's chromium (/usr/bin/chromium, or $ORDERFLOW_CHROMIUM) through playwright-core;
// Playwright never downloads a browser here. Prints exactly one JSON line on stdout with what it
// saw ({"ok": true, ...} or {"ok": false, "error": ...}); on failure it also writes a clear
// message to stderr, saves `<png path without .png>.failure.png` when a page was open, and exits
// non-zero. The browser is closed and its temporary profile removed in every case.
// Install: `npm ci --prefix tests/browser` and `apt-get install chromium`, or
// `. scripts/browser.sh && ensure_browser_tools` (scripts/test.sh does it).

import path from 'node:path';
import {
  expectRunningCountdown,
  fail,
  openPage,
  parseFlags,
  parseTimeoutMs,
  runMain,
  saveScreenshot,
  textReader,
} from './common.mjs';

const FINAL = ['PAID', 'CLOSED', 'CANCELLED', 'REJECTED', 'REFUNDED', 'NEEDS_REVIEW'];
const seen = { ok: false };

function usage() {
  return (
    'usage: node tests/browser/checkout.mjs --url <checkout url> --screenshot <png path> ' +
    '[--expect PAID] [--amount "39.98 USD"] [--timeout-ms N]'
  );
}

function parseArgs(argv) {
  const opts = { expect: 'PAID', timeoutMs: 60_000 };
  const names = {
    '--url': 'url',
    '--screenshot': 'screenshot',
    '--expect': 'expect',
    '--amount': 'amount',
    '--timeout-ms': 'timeoutMs',
  };
  parseFlags(argv, names, usage, (key, value) => {
    opts[key] = value;
  });
  if (!opts.url) fail(`--url is required\n${usage()}`);
  if (!opts.screenshot) fail(`--screenshot is required\n${usage()}`);
  try {
    new URL(opts.url);
  } catch {
    fail(`--url is not a URL: ${opts.url}`);
  }
  opts.timeoutMs = parseTimeoutMs(opts.timeoutMs);
  opts.expect = String(opts.expect).toUpperCase();
  if (!FINAL.includes(opts.expect)) {
    fail(`--expect must be one of ${FINAL.join(', ')}`);
  }
  opts.screenshot = path.resolve(opts.screenshot);
  return opts;
}

async function run(opts, state, { left }) {
  const page = await openPage(state, seen, left, { viewport: { width: 900, height: 760 } });
  seen.page_errors = [];
  seen.console_errors = [];
  seen.failed_responses = [];
  page.on('pageerror', (e) => seen.page_errors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error') seen.console_errors.push(m.text());
  });
  page.on('response', (r) => {
    if (r.status() >= 400) seen.failed_responses.push(`${r.status()} ${r.request().method()} ${r.url()}`);
  });
  page.on('requestfailed', (r) =>
    seen.failed_responses.push(`${r.failure()?.errorText ?? 'failed'} ${r.method()} ${r.url()}`),
  );

  // 1. The page itself.
  let response;
  try {
    response = await page.goto(opts.url, { waitUntil: 'load', timeout: left('the page loaded') });
  } catch (e) {
    fail(`could not open ${opts.url}: ${e.message.split('\n')[0]}`);
  }
  seen.http_status = response?.status() ?? null;
  if (!response || !response.ok()) fail(`GET ${opts.url} answered HTTP ${seen.http_status}`);
  seen.title = await page.title();

  const text = textReader(page, left);
  seen.amount = await text('#amount');
  seen.order_id = await text('#order');
  seen.payment_no = await text('#payment-no');
  seen.charge_before = await text('#charge-state');
  if (!/^\d+(\.\d+)? [A-Z]{3}$/.test(seen.amount)) {
    fail(`#amount does not show an amount: ${JSON.stringify(seen.amount)}`);
  }
  if (opts.amount !== undefined && seen.amount !== opts.amount) {
    fail(`#amount shows ${JSON.stringify(seen.amount)}, expected ${JSON.stringify(opts.amount)}`);
  }
  if (!seen.title.includes(seen.amount)) {
    fail(`the title ${JSON.stringify(seen.title)} does not name the amount ${seen.amount}`);
  }
  if (!(await page.locator('#amount').isVisible())) fail('#amount is not visible');
  if (seen.charge_before !== 'PENDING') {
    fail(`the charge is ${JSON.stringify(seen.charge_before)} before paying, expected PENDING`);
  }

  // 2. The countdown runs.
  seen.countdown = await expectRunningCountdown(page, left);

  // 3. Pay.
  const pay = page.locator('#pay');
  if (!(await pay.isVisible()) || !(await pay.isEnabled())) fail('#pay is not a visible, enabled button');
  const payResponse = page.waitForResponse(
    (r) => r.request().method() === 'POST' && /\/sandbox\/checkout\/[^/]+\/pay(\?|$)/.test(r.url()),
    { timeout: left('the pay request was answered') },
  );
  payResponse.catch(() => {}); // awaited below; a click failure must not leave it unhandled
  await pay.click({ timeout: left('Pay was clicked') });
  let paid;
  try {
    paid = await payResponse;
  } catch (e) {
    fail(`clicking Pay sent no answered POST .../pay: ${e.message.split('\n')[0]}`);
  }
  seen.pay_http_status = paid.status();
  if (!paid.ok()) {
    fail(`POST ${paid.url()} answered HTTP ${paid.status()}: ${(await paid.text()).slice(0, 300)}`);
  }

  // 4. The page follows the order until it is final.
  try {
    const handle = await page.waitForFunction(
      (finals) => {
        const s = document.getElementById('result')?.dataset.status;
        return finals.includes(s) ? s : false;
      },
      FINAL,
      { timeout: left(`#result showed a final status`), polling: 100 },
    );
    seen.status = await handle.jsonValue();
  } catch (e) {
    seen.status = (await page.locator('#result').getAttribute('data-status').catch(() => null)) ?? null;
    seen.result = await page.locator('#result').innerText().catch(() => null);
    fail(
      `#result never showed a final status within ${opts.timeoutMs} ms in all ` +
        `(data-status ${JSON.stringify(seen.status)}, text ${JSON.stringify(seen.result)})`,
    );
  }
  seen.result = await text('#result');
  seen.charge_after = await text('#charge-state');
  if (seen.status !== opts.expect) {
    fail(`the order ended ${seen.status} (${JSON.stringify(seen.result)}), expected ${opts.expect}`);
  }
  if (seen.result !== `Order ${opts.expect}`) {
    fail(`#result reads ${JSON.stringify(seen.result)}, expected "Order ${opts.expect}"`);
  }
  if (opts.expect === 'PAID' && seen.charge_after !== 'PAID') {
    fail(`#charge-state reads ${JSON.stringify(seen.charge_after)} after paying, expected PAID`);
  }
  if (!(await pay.isDisabled())) fail('#pay is still enabled after paying');
  if (seen.page_errors.length > 0) fail(`the page threw: ${seen.page_errors.join(' | ')}`);

  // 5. The picture.
  await saveScreenshot(page, opts, seen, left);
}

await runMain({
  script: 'checkout.mjs',
  seen,
  parseArgs,
  record: (opts) => {
    seen.url = opts.url;
    seen.expect = opts.expect;
  },
  run,
});
