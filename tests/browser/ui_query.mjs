#!/usr/bin/env node
// A real browser at the Temporal Web UI (v2.54, served by `temporal server start-dev --ui-port`),
// as an operator looking for stuck orders: open the workflows list filtered by a visibility query,
// wait until the table lists the expected workflow id and none of the --absent ones, and take a
// full-page screenshot.
//
//   node tests/browser/ui_query.mjs --ui <base url> --query <visibility query>
//        --expect <workflow id> [--absent <workflow id>]... --screenshot <png path>
//        [--timeout-ms 60000]
//
// The page is `<ui>/namespaces/default/workflows?query=<encodeURIComponent(query)>`. Visibility is
// eventually consistent, so the page is loaded again (about once a second) until the table lists
// the expected id and no --absent id, or the timeout passes. Each load counts only once the UI's own
// list request (GET /api/v1/namespaces/default/workflows?query=...) has been answered and the table
// shows exactly the rows of that answer; the request must carry the query unchanged. A query the
// server refuses ("Error Filtering Workflows") fails at once.
//
// The table is read by its column headers (th[data-testid="workflows-summary-table-header-cell-
// Workflow ID"] / "...-Status"), one row per tr[data-testid="workflows-summary-configurable-table-
// row"]; an empty result is the "No Workflows Found" heading.
//
// Drives Debian's chromium (/usr/bin/chromium, or $ORDERFLOW_CHROMIUM) through playwright-core
// with the same flags as checkout.mjs (both through common.mjs); Playwright never downloads a
// browser here. Prints exactly one JSON line on stdout ({"ok": true, "listed": [...], ...} or
// {"ok": false, "error": ...}); on failure it also writes a clear message to stderr, saves
// `<png path without .png>.failure.png` when a page was open, and exits non-zero. The browser is
// closed and its temporary profile removed in every case.
// Install: `npm ci --prefix tests/browser` and `apt-get install chromium`, or
// `. scripts/browser.sh && ensure_browser_tools` (scripts/test.sh does it).

import path from 'node:path';
import { fail, openPage, parseFlags, parseTimeoutMs, runMain, saveScreenshot } from './common.mjs';

const NAMESPACE = 'default';
/** Pause between two loads of the page while the expected rows are not there yet. */
const POLL_MS = 1_000;
/** One load: from navigation to a table that shows the UI's answer. */
const LOAD_MS = 20_000;

const seen = { ok: false };

function usage() {
  return (
    'usage: node tests/browser/ui_query.mjs --ui <base url> --query <visibility query> ' +
    '--expect <workflow id> [--absent <workflow id>]... --screenshot <png path> [--timeout-ms N]'
  );
}

function parseArgs(argv) {
  const opts = { absent: [], timeoutMs: 60_000 };
  const names = {
    '--ui': 'ui',
    '--query': 'query',
    '--expect': 'expect',
    '--absent': 'absent',
    '--screenshot': 'screenshot',
    '--timeout-ms': 'timeoutMs',
  };
  parseFlags(argv, names, usage, (key, value, flag) => {
    if (key === 'absent') opts.absent.push(value);
    else if (opts[key] !== undefined && key !== 'timeoutMs') fail(`${flag} given twice\n${usage()}`);
    else opts[key] = value;
  });
  for (const required of ['ui', 'query', 'expect', 'screenshot']) {
    if (!opts[required]) fail(`--${required} is required\n${usage()}`);
  }
  let base;
  try {
    base = new URL(opts.ui);
  } catch {
    fail(`--ui is not a URL: ${opts.ui}`);
  }
  if (!/^https?:$/.test(base.protocol)) fail(`--ui must be an http(s) URL: ${opts.ui}`);
  opts.ui = opts.ui.replace(/\/+$/, '');
  if (!opts.query.trim()) fail('--query is empty');
  if (opts.absent.includes(opts.expect)) {
    fail(`${opts.expect} is both --expect and --absent`);
  }
  opts.timeoutMs = parseTimeoutMs(opts.timeoutMs);
  opts.screenshot = path.resolve(opts.screenshot);
  return opts;
}

/** The page an operator opens (and the README documents). */
function listUrl(opts) {
  return `${opts.ui}/namespaces/${NAMESPACE}/workflows?query=${encodeURIComponent(opts.query)}`;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** What the page shows right now (runs in the page). */
function readTable() {
  const headings = [...document.querySelectorAll('h2')];
  const heading = (text) => headings.find((h) => h.textContent.trim() === text);
  const errorHeading = heading('Error Filtering Workflows');
  const headers = [...document.querySelectorAll('table thead tr th')];
  const column = (name) =>
    headers.findIndex((th) => th.dataset.testid === `workflows-summary-table-header-cell-${name}`);
  const idColumn = column('Workflow ID');
  const statusColumn = column('Status');
  const rows = [
    ...document.querySelectorAll('table tbody tr[data-testid="workflows-summary-configurable-table-row"]'),
  ].map((tr) => {
    const cell = (i) => (i >= 0 ? tr.children[i] : undefined);
    const text = (el) => el?.textContent.replace(/\s+/g, ' ').trim() ?? null;
    return {
      workflow_id: text(cell(idColumn)),
      status: text(cell(statusColumn)?.querySelector('[data-testid="execution-status"]')),
      href: cell(idColumn)?.querySelector('a')?.getAttribute('href') ?? null,
    };
  });
  return {
    headers: headers.map((th) => th.textContent.trim()).filter(Boolean),
    hasIdColumn: idColumn >= 0,
    rows,
    empty: Boolean(heading('No Workflows Found')),
    error: errorHeading
      ? (errorHeading.parentElement?.querySelector('p')?.textContent.trim() ?? 'no details shown')
      : null,
    count: document.querySelector('[data-testid="workflow-count"]')?.textContent.trim() ?? null,
  };
}

async function run(opts, state, { deadline, left }) {
  const page = await openPage(state, seen, left, {
    // Wide enough for every column of the workflows table.
    viewport: { width: 1800, height: 900 },
    timezoneId: 'UTC',
  });
  seen.page_errors = [];
  page.on('pageerror', (e) => seen.page_errors.push(e.message));

  // The UI's own list requests, newest last: what the server answered for which query.
  const listPath = `/api/v1/namespaces/${NAMESPACE}/workflows`;
  let answers = [];
  page.on('response', async (r) => {
    const url = new URL(r.url());
    if (r.request().method() !== 'GET' || url.pathname !== listPath) return;
    const answer = { query: url.searchParams.get('query'), http_status: r.status(), ids: null };
    answers.push(answer);
    try {
      const body = await r.json();
      answer.ids = (body.executions ?? []).map((e) => e.execution?.workflowId ?? null);
      if (body.nextPageToken) answer.more_pages = true;
    } catch (e) {
      answer.body_error = e.message.split('\n')[0];
    }
  });

  // Fails with what the last complete load showed, once there is no time for another.
  const verdict = (table) => {
    const ids = table.rows.map((r) => r.workflow_id);
    const listed = JSON.stringify(ids);
    const loads = `${seen.loads} load${seen.loads === 1 ? '' : 's'}`;
    if (!ids.includes(opts.expect)) {
      fail(
        `the workflows table never listed ${opts.expect} within ${opts.timeoutMs} ms ` +
          `(${loads}); the last complete load listed ${listed}`,
      );
    }
    const present = opts.absent.filter((id) => ids.includes(id));
    fail(
      `the workflows table still lists ${JSON.stringify(present)}, which must be absent, after ` +
        `${opts.timeoutMs} ms (${loads}); the last complete load listed ${listed}`,
    );
  };

  const url = listUrl(opts);
  seen.url = url;
  seen.loads = 0;
  let last = null;
  for (;;) {
    // 1. A fresh load of the page.
    answers = [];
    seen.loads += 1;
    let response;
    try {
      response = await page.goto(url, { waitUntil: 'load', timeout: Math.min(left('the page loaded'), LOAD_MS) });
    } catch (e) {
      if (last && Date.now() >= deadline) verdict(last);
      fail(`could not open ${url}: ${e.message.split('\n')[0]}`);
    }
    seen.http_status = response?.status() ?? null;
    if (!response || !response.ok()) fail(`GET ${url} answered HTTP ${seen.http_status}`);

    // 2. Wait until the table shows the answer to the UI's list request (or the UI's error).
    const loadEnds = Math.min(deadline, Date.now() + LOAD_MS);
    let table;
    let answer;
    for (;;) {
      table = await page.evaluate(readTable);
      if (table.error !== null) {
        fail(`the UI shows "Error Filtering Workflows": ${table.error} (query ${JSON.stringify(opts.query)})`);
      }
      answer = answers.at(-1);
      const settled =
        answer?.ids &&
        table.hasIdColumn &&
        (answer.ids.length === 0 ? table.empty && table.rows.length === 0 : table.rows.length === answer.ids.length);
      if (settled) break;
      if (Date.now() > loadEnds) {
        if (Date.now() > deadline) {
          // A reload that did not finish in time: the verdict is the last complete load's.
          if (last) verdict(last);
          fail(
            `timed out after ${opts.timeoutMs} ms before the workflows table showed the UI's answer ` +
              `(list answers ${JSON.stringify(answers)}, table ${JSON.stringify(table)})`,
          );
        }
        fail(
          `the workflows table did not show the UI's answer within ${LOAD_MS} ms of a load ` +
            `(list answers ${JSON.stringify(answers)}, table ${JSON.stringify(table)})`,
        );
      }
      await sleep(100);
    }
    if (answer.http_status !== 200) {
      fail(`the UI's list request answered HTTP ${answer.http_status}`);
    }
    // The UI must have asked the server exactly the operator's query.
    seen.api_query = answer.query;
    if (answer.query !== opts.query) {
      fail(
        `the UI sent the query ${JSON.stringify(answer.query)} to ${listPath}, not ` +
          `${JSON.stringify(opts.query)}: the URL's query parameter was not applied as given`,
      );
    }
    if (answer.more_pages) seen.more_pages = true;

    // 3. Did this load show what we wait for?
    const ids = table.rows.map((r) => r.workflow_id);
    const domIds = [...ids].sort();
    const apiIds = [...answer.ids].sort();
    if (JSON.stringify(domIds) !== JSON.stringify(apiIds)) {
      fail(`the table lists ${JSON.stringify(ids)} but the server answered ${JSON.stringify(answer.ids)}`);
    }
    last = table;
    seen.listed = table.rows.map(({ workflow_id, status }) => ({ workflow_id, status }));
    seen.count = table.count;
    // The count header comes from its own request and can trail the table: wait for both.
    const counted = table.count === String(ids.length);
    if (ids.includes(opts.expect) && !opts.absent.some((id) => ids.includes(id)) && counted) break;

    // Visibility may lag behind the workflows: load again until the deadline.
    if (deadline - Date.now() < POLL_MS + 500) verdict(last);
    await sleep(POLL_MS);
  }

  // 4. The row an operator would click.
  const row = last.rows.find((r) => r.workflow_id === opts.expect);
  const hrefPrefix = `/namespaces/${NAMESPACE}/workflows/${encodeURIComponent(opts.expect)}/`;
  if (!row.href?.startsWith(hrefPrefix)) {
    fail(`the row of ${opts.expect} links to ${JSON.stringify(row.href)}, not to ${hrefPrefix}...`);
  }
  if (!(await page.getByRole('link', { name: opts.expect, exact: true }).first().isVisible())) {
    fail(`the workflow id ${opts.expect} is in the table but not visible`);
  }
  seen.expected_row = { workflow_id: row.workflow_id, status: row.status, href: row.href };
  if (seen.page_errors.length > 0) fail(`the page threw: ${seen.page_errors.join(' | ')}`);

  // 5. The picture.
  await saveScreenshot(page, opts, seen, left);
}

await runMain({
  script: 'ui_query.mjs',
  seen,
  parseArgs,
  record: (opts) => {
    seen.ui = opts.ui;
    seen.query = opts.query;
    seen.expect = opts.expect;
    seen.absent = opts.absent;
  },
  run,
});
