#!/usr/bin/env node
// A real browser at the QR payment page (http/src/pay_page.rs), as a customer with a phone:
// open the page, see the provider, the amount and a running countdown, take a picture of the QR
// code (the harness decodes it and pays at the provider's stand-in, as the phone would), then
// wait for the page to show the order's final status, and take a full-page screenshot.
//
//   node tests/browser/qr_checkout.mjs --url <pay page url> --qr-shot <png path>
//        --screenshot <png path> [--expect PAID] [--amount "168.00 CNY"] [--timeout-ms 60000]
//
// The QR picture is written to --qr-shot as soon as the code is on screen; the harness watches
// for that file. Prints exactly one JSON line on stdout with what it saw (see common.mjs).

import fs from 'node:fs';
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
    'usage: node tests/browser/qr_checkout.mjs --url <pay page url> --qr-shot <png path> ' +
    '--screenshot <png path> [--expect PAID] [--amount "168.00 CNY"] [--timeout-ms N]'
  );
}

function parseArgs(argv) {
  const opts = { expect: 'PAID', timeoutMs: 60_000 };
  const names = {
    '--url': 'url',
    '--qr-shot': 'qrShot',
    '--screenshot': 'screenshot',
    '--expect': 'expect',
    '--amount': 'amount',
    '--timeout-ms': 'timeoutMs',
  };
  parseFlags(argv, names, usage, (key, value) => {
    opts[key] = value;
  });
  for (const [flag, key] of [['--url', 'url'], ['--qr-shot', 'qrShot'], ['--screenshot', 'screenshot']]) {
    if (!opts[key]) fail(`${flag} is required\n${usage()}`);
  }
  try {
    new URL(opts.url);
  } catch {
    fail(`--url is not a URL: ${opts.url}`);
  }
  opts.timeoutMs = parseTimeoutMs(opts.timeoutMs);
  opts.expect = String(opts.expect).toUpperCase();
  if (!FINAL.includes(opts.expect)) fail(`--expect must be one of ${FINAL.join(', ')}`);
  opts.screenshot = path.resolve(opts.screenshot);
  opts.qrShot = path.resolve(opts.qrShot);
  return opts;
}

async function run(opts, state, { left }) {
  const page = await openPage(state, seen, left, { viewport: { width: 900, height: 900 } });
  seen.page_errors = [];
  page.on('pageerror', (e) => seen.page_errors.push(e.message));

  // 1. The page.
  let response;
  try {
    response = await page.goto(opts.url, { waitUntil: 'load', timeout: left('the page loaded') });
  } catch (e) {
    fail(`could not open ${opts.url}: ${e.message.split('\n')[0]}`);
  }
  seen.http_status = response?.status() ?? null;
  if (!response || !response.ok()) fail(`GET ${opts.url} answered HTTP ${seen.http_status}`);
  seen.cache_control = response.headers()['cache-control'] ?? null;
  seen.title = await page.title();
  const text = textReader(page, left);
  seen.provider = await text('#provider');
  seen.amount = await text('#amount');
  seen.order_id = await text('#order');
  if (opts.amount !== undefined && seen.amount !== opts.amount) {
    fail(`#amount shows ${JSON.stringify(seen.amount)}, expected ${JSON.stringify(opts.amount)}`);
  }
  if (!seen.title.includes(seen.amount)) {
    fail(`the title ${JSON.stringify(seen.title)} does not name the amount ${seen.amount}`);
  }

  // 2. The countdown runs.
  seen.countdown = await expectRunningCountdown(page, left);
  seen.waiting = await text('#result');

  // 3. The QR code, as a phone camera would see it: a picture of the element on screen.
  const qr = page.locator('#qr svg');
  if ((await qr.count()) !== 1 || !(await qr.isVisible())) fail('the page shows no QR code (#qr svg)');
  const box = await qr.boundingBox();
  seen.qr_size = box ? [Math.round(box.width), Math.round(box.height)] : null;
  fs.mkdirSync(path.dirname(opts.qrShot), { recursive: true });
  const partial = opts.qrShot.replace(/\.png$/i, '') + '.partial.png';
  await page.locator('#qr').screenshot({ path: partial, timeout: left('the QR picture') });
  fs.renameSync(partial, opts.qrShot); // appears whole: the harness reads it as soon as it exists
  seen.qr_shot = opts.qrShot;

  // 4. The customer pays on the phone; the page follows the order until it is over.
  try {
    const handle = await page.waitForFunction(
      (finals) => {
        const s = document.getElementById('result')?.dataset.status;
        return finals.includes(s) ? s : false;
      },
      FINAL,
      { timeout: left('#result showed a final status'), polling: 100 },
    );
    seen.status = await handle.jsonValue();
  } catch {
    seen.status = (await page.locator('#result').getAttribute('data-status').catch(() => null)) ?? null;
    fail(`#result never showed a final status within ${opts.timeoutMs} ms (data-status ${JSON.stringify(seen.status)})`);
  }
  seen.result = await text('#result');
  seen.countdown_after = await text('#countdown');
  if (seen.status !== opts.expect) fail(`the order ended ${seen.status}, expected ${opts.expect}`);
  if (seen.result !== `Order ${opts.expect}`) {
    fail(`#result reads ${JSON.stringify(seen.result)}, expected "Order ${opts.expect}"`);
  }
  if (seen.page_errors.length > 0) fail(`the page threw: ${seen.page_errors.join(' | ')}`);

  // 5. The picture.
  await saveScreenshot(page, opts, seen, left);
}

await runMain({
  script: 'qr_checkout.mjs',
  seen,
  parseArgs,
  record: (opts) => {
    seen.url = opts.url;
    seen.expect = opts.expect;
  },
  run,
});
