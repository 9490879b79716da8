#!/usr/bin/env node
// Drives the command center in Debian's headless Chromium through playwright-core, as a
// person would: log in, ask, read the plan's DAG, open the preview and diff, approve,
// run, restore, rate. Asserts what is on screen at each stage and saves a screenshot
// per stage. Exits 1 with a clear message on the first failed expectation.
//
//   node drive.mjs --base-url http://127.0.0.1:8080 --token dh_... --artifacts DIR \
//                  [--scenario memory|flow|smoke] [--subject NAME] [--chromium PATH]
//
// Scenarios:
//   smoke   log in (a bad token refused first), namespaces and history listed, log out:
//           any deckhand.
//   flow    smoke's login, then a request through plan, preview, approve, run, restore
//           and rating 100, with expectations that hold for any planner (the real
//           `deckhand serve` binary).
//   memory  flow with the exact expectations of the API tests' in-memory service
//           (crates/api/tests/common), plus a policy denial in kube-system and a 401
//           sending the person back to the login page.
//
// playwright-core is loaded from $DECKHAND_NODE_DIR (default
// $DECKHAND_CACHE/node, i.e. ~/.cache/deckhand/node), where
// scripts/install-chromium.sh puts it.

import { createRequire } from 'node:module';
import { existsSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

const INSTALL_HINT = 'run scripts/install-chromium.sh (it installs Debian\'s chromium and playwright-core)';
/** How long one expectation may take to come true on a loaded 2-core machine. */
const PATIENCE_MS = 30_000;

class ExpectationFailed extends Error {}

function fail(message) {
  console.error(`drive.mjs: FAILED: ${message}`);
  process.exit(1);
}

const { values: options } = parseArgs({
  options: {
    'base-url': { type: 'string' },
    token: { type: 'string' },
    artifacts: { type: 'string' },
    scenario: { type: 'string', default: 'memory' },
    subject: { type: 'string' },
    request: { type: 'string', default: 'scale web to 3 replicas in shop' },
    namespace: { type: 'string', default: 'shop' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
  },
});
for (const required of ['base-url', 'token', 'artifacts']) {
  if (!options[required]) fail(`--${required} is required`);
}
const scenario = options.scenario;
if (!['smoke', 'flow', 'memory'].includes(scenario)) fail(`unknown --scenario ${scenario}: smoke, flow or memory`);
const exact = scenario === 'memory';

if (!existsSync(options.chromium)) fail(`no Chromium at ${options.chromium}: ${INSTALL_HINT}`);
const nodeDir = process.env.DECKHAND_NODE_DIR
  ?? path.join(process.env.DECKHAND_CACHE ?? path.join(os.homedir(), '.cache', 'deckhand'), 'node');
let chromium;
try {
  ({ chromium } = createRequire(path.join(nodeDir, 'package.json'))('playwright-core'));
} catch (error) {
  fail(`playwright-core is not installed in ${nodeDir} (${error.code ?? error.message}): ${INSTALL_HINT}`);
}

const artifacts = path.resolve(options.artifacts);
mkdirSync(artifacts, { recursive: true });

// ---------------------------------------------------------------- harness

function expect(condition, message) {
  if (!condition) throw new ExpectationFailed(message);
}

let stageNumber = 0;
let page;
const pageProblems = [];

/** Runs one stage, then screenshots the page (also when the stage failed). */
async function stage(name, body) {
  stageNumber += 1;
  const file = `${String(stageNumber).padStart(2, '0')}-${name}`;
  console.log(`stage ${stageNumber}: ${name}`);
  try {
    await body();
  } catch (error) {
    await page.screenshot({ path: path.join(artifacts, `${file}-FAILED.png`), fullPage: true }).catch(() => {});
    const reason = error instanceof ExpectationFailed ? error.message : (error.stack ?? String(error));
    throw new ExpectationFailed(`stage ${stageNumber} (${name}): ${reason}`);
  }
  await page.screenshot({ path: path.join(artifacts, `${file}.png`), fullPage: true });
}

const byTestId = (id) => page.getByTestId(id);

/** Waits until `testId` is visible. */
async function visible(testId, what) {
  try {
    await byTestId(testId).first().waitFor({ state: 'visible', timeout: PATIENCE_MS });
  } catch {
    throw new ExpectationFailed(`${what ?? testId} did not appear`);
  }
}

/** Waits until the text of `testId` satisfies `test` (a string it contains, or a RegExp). */
async function textOf(testId, test, what) {
  const locator = byTestId(testId).first();
  const deadline = Date.now() + PATIENCE_MS;
  let text = '';
  while (Date.now() < deadline) {
    text = (await locator.textContent({ timeout: PATIENCE_MS }).catch(() => '')) ?? '';
    const ok = typeof test === 'string' ? text.includes(test) : test.test(text);
    if (ok) return text;
    await page.waitForTimeout(100);
  }
  throw new ExpectationFailed(`${what ?? testId} shows ${JSON.stringify(text.slice(0, 400))}, expected ${test}`);
}

/** Waits until `predicate` (run in the page) returns true. */
async function until(predicate, argument, what) {
  try {
    await page.waitForFunction(predicate, argument, { timeout: PATIENCE_MS, polling: 100 });
  } catch {
    throw new ExpectationFailed(`${what} did not happen`);
  }
}

const nodeStates = () => page.$$eval('[data-testid^="dag-node-"]', (nodes) =>
  nodes.map((node) => ({ id: node.dataset.stepId, state: node.dataset.state, x: Number(node.dataset.x), depth: Number(node.dataset.depth) })));

// ---------------------------------------------------------------- stages

async function login() {
  await stage('login-page', async () => {
    await page.goto(options['base-url'], { waitUntil: 'load' });
    await visible('login-view', 'the login form');
    expect((await page.title()).includes('deckhand'), `the page title is ${await page.title()}`);
    expect(await byTestId('app-view').isHidden(), 'the app shows before logging in');
  });

  await stage('login-refused', async () => {
    await byTestId('token-input').fill('dh_not-a-token');
    await byTestId('login-button').click();
    await textOf('login-message', 'refused', 'the login message for a wrong token');
    expect(await byTestId('app-view').isHidden(), 'a wrong token opened the app');
  });

  await stage('logged-in', async () => {
    await byTestId('token-input').fill(options.token);
    await byTestId('token-input').press('Enter');
    await visible('app-view', 'the command center after logging in');
    const who = await textOf('whoami', /\S/, 'the caller shown in the header');
    if (options.subject) expect(who.includes(options.subject), `the header names ${who}, not ${options.subject}`);
    await until(() => document.querySelectorAll('[data-testid="namespace-select"] option').length > 1,
      undefined, 'namespaces from /api/namespaces filling the selector');
    const namespaces = await byTestId('namespace-select').locator('option').allTextContents();
    if (exact) {
      for (const name of ['shop', 'default', 'kube-system']) {
        expect(namespaces.includes(name), `namespace ${name} missing from ${namespaces.join(', ')}`);
      }
      await textOf('thread-list', 'scale web to 2 replicas in shop', 'the thread history (the seeded thread)');
    }
  });
}

async function smoke() {
  await login();
  const who = await byTestId('whoami').textContent();
  if (who.endsWith('· viewer') && await byTestId('thread-item').count() > 0) {
    await stage('viewer-watches', async () => {
      await byTestId('thread-item').first().click();
      await visible('plan-panel', 'a thread\'s plan');
      await visible('scope-note', 'why a viewer cannot act');
      for (const control of ['approve-button', 'reject-button', 'run-button', 'compose-text', 'restore-button', 'rating-submit']) {
        expect(await byTestId(control).isDisabled(), `${control} is enabled for a viewer`);
      }
      expect(await byTestId('preview-button').isEnabled(), 'a viewer cannot preview');
    });
  }
  await stage('logged-out', async () => {
    await byTestId('logout-button').click();
    await visible('login-view', 'the login form after logging out');
    await textOf('login-message', 'logged out');
    expect(await page.evaluate(() => sessionStorage.getItem('deckhand.token')) === null, 'the token outlived logging out');
  });
}

async function ask(request, namespace) {
  if (await byTestId('plan-panel').isVisible()) await byTestId('new-request-button').click();
  await until(() => document.getElementById('thread-title')?.textContent === 'New request', undefined, 'a blank request form');
  if (namespace) await byTestId('namespace-select').selectOption(namespace);
  await byTestId('compose-text').fill(request);
  await byTestId('compose-send').click();
  await visible('plan-panel', 'the plan of the new request');
  await until(() => document.querySelectorAll('[data-testid^="dag-node-"]').length > 0, undefined, 'the plan DAG drawing its steps');
}

async function flow() {
  await login();

  await stage('plan', async () => {
    await ask(options.request, options.namespace);
    await textOf('thread-title', options.request.slice(0, 20), 'the thread title');
    await textOf('plan-hash', /^sha256:[0-9a-f]{64}$/, 'the plan hash');
    // The real service runs a plan's read-only steps at once and stops at approval.
    await textOf('plan-status', exact ? 'proposed' : /proposed|running|awaiting_approval/, 'the plan status');
    await until((text) => [...document.querySelectorAll('[data-testid="message"][data-role="user"]')]
      .some((message) => message.textContent.includes(text)), options.request, 'the request in the chat');
    const nodes = await nodeStates();
    const depthOf = new Map(nodes.map((node) => [node.id, node]));
    const edges = await page.$$eval('[data-testid^="dag-edge-"]', (paths) =>
      paths.map((edge) => ({ from: edge.dataset.from, to: edge.dataset.to })));
    for (const { from, to } of edges) {
      expect(depthOf.has(from) && depthOf.has(to), `an edge ${from} -> ${to} between steps not drawn`);
      expect(depthOf.get(to).x > depthOf.get(from).x, `${to} is not drawn right of ${from}, which it depends on`);
      expect(depthOf.get(to).depth > depthOf.get(from).depth, `${to} is not deeper than ${from}`);
    }
    if (exact) {
      expect(nodes.map((node) => node.id).join(',') === 'look,scale', `steps ${nodes.map((node) => node.id)}`);
      expect(nodes.every((node) => node.state === 'pending'), `states before approval: ${JSON.stringify(nodes)}`);
      expect(JSON.stringify(edges) === '[{"from":"look","to":"scale"}]', `edges ${JSON.stringify(edges)}`);
      // The agent's reply streams in as token events, then lands as one message.
      await until(() => Number(document.querySelector('[data-testid="messages"]').dataset.tokenCount) > 5,
        undefined, 'the reply streaming in token by token');
      await until(() => [...document.querySelectorAll('[data-testid="message"][data-role="agent"]')]
        .some((message) => message.textContent.includes('approve the plan when it is right')), undefined, 'the streamed reply completing as a message');
      expect(await byTestId('streaming-reply').count() === 0, 'the streamed draft stayed next to the final message');
      await textOf('similar-list', 'scale web to 2 replicas in shop', 'similar past threads');
      await textOf('live-status', 'live', 'the live event stream');
    }
  });

  await stage('step-detail', async () => {
    const nodes = await nodeStates();
    const target = exact ? 'scale' : nodes.at(-1).id;
    const node = byTestId(`dag-node-${target}`);
    await node.focus();
    await page.keyboard.press('Enter');
    await visible('step-detail', 'the step panel');
    await textOf('step-title', `(${target})`, 'the selected step');
    if (exact) await textOf('step-detail', 'the cluster: waits for approval', 'the step as a change');
  });

  await stage('preview', async () => {
    await byTestId('preview-button').click();
    await visible('preview-panel', 'the preview panel');
    if (exact) {
      await textOf('preview-scale', 'apps/v1 Deployment shop/web', 'the preview target');
      await textOf('preview-yaml-scale', 'replicas: 3', 'the manifest');
      const diff = await textOf('preview-diff-scale', '+  replicas: 3', 'the diff');
      expect(diff.includes('-  replicas: 1'), `the diff does not show the live replicas: ${diff}`);
      await visible('preview-allowed-scale', 'the policy verdict');
    } else {
      await until(() => document.querySelector('[data-testid^="preview-"] pre, [data-testid="preview-error"], [data-testid="preview-empty"]'),
        undefined, 'a preview (or why there is none)');
    }
  });

  await stage('approved', async () => {
    await byTestId('approve-button').click();
    await textOf('plan-status', 'approved', 'the plan status after approving');
    await until(() => [...document.querySelectorAll('[data-testid="activity"]')].some((line) => line.textContent.includes('approved the plan')),
      undefined, 'the approval in the conversation');
  });

  await stage('result', async () => {
    await byTestId('run-button').click();
    await until(() => {
      const nodes = [...document.querySelectorAll('[data-testid^="dag-node-"]')];
      return nodes.length > 0 && nodes.every((node) => ['succeeded', 'failed', 'skipped', 'cancelled'].includes(node.dataset.state));
    }, undefined, 'every step reaching a final state');
    await textOf('plan-status', /succeeded|failed/, 'the plan outcome');
    if (exact) {
      const nodes = await nodeStates();
      expect(nodes.every((node) => node.state === 'succeeded'), `steps after the run: ${JSON.stringify(nodes)}`);
      await textOf('result-text', 'Done: look: succeeded, scale: succeeded', 'the result');
      await visible('preview-stale', 'the note that the preview predates the run');
    }
    await visible('restore-button', 'the restore button of a thread that changed something');
  });

  await stage('restored', async () => {
    await byTestId('restore-button').click();
    await visible('restore-result', 'what the restore did');
    if (exact) await textOf('restore-result', 'restored Deployment shop/web', 'the restored objects');
    await until(() => [...document.querySelectorAll('[data-testid="activity"]')].some((line) => line.textContent.startsWith('Restored')),
      undefined, 'the restore event in the conversation');
  });

  await stage('rated', async () => {
    await byTestId('rating-input').fill('100');
    await byTestId('rating-comment').fill('exactly what I asked for');
    await byTestId('rating-submit').click();
    await textOf('rating-status', 'closed', 'the rating status');
    expect(await byTestId('compose-text').isDisabled(), 'a closed thread still takes messages');
    await until(() => document.querySelector('[data-testid="thread-item"][aria-current="true"]')?.dataset.status === 'closed',
      undefined, 'the history showing the thread closed');
    // The session and the open thread survive a reload (token in sessionStorage, thread in the URL).
    await page.reload({ waitUntil: 'load' });
    await visible('app-view', 'the command center after a reload');
    await textOf('thread-meta', 'closed', 'the reopened thread');
    await textOf('rating-status', 'Rated 100', 'the rating after a reload');
    // What the thread's detail lacks comes back from its replayed events, in place.
    await textOf('messages', 'approved the plan', 'the approval in the replayed history');
    await textOf('messages', 'rated the thread 100', 'the rating in the replayed history');
    await visible('restored-item', 'the restore in the replayed history');
    if (exact) await textOf('result-text', 'Done: look: succeeded, scale: succeeded', 'the result after a reload');
    const order = await page.$$eval('#messages > li', (items) => items.map((item) => item.dataset.role ?? item.textContent));
    const approvedAt = order.findIndex((line) => line.includes('approved the plan'));
    expect(approvedAt > order.indexOf('user'), `the approval is not after the request: ${JSON.stringify(order)}`);
  });
}

async function memory() {
  await flow();

  await stage('policy-denied', async () => {
    await byTestId('new-request-button').click();
    await ask('scale web to 3 replicas in kube-system', 'kube-system');
    // One step approved on its own first, from the step panel.
    await byTestId('dag-node-scale').click();
    await byTestId('step-approve-button').click();
    await until(() => [...document.querySelectorAll('[data-testid="activity"]')].some((line) => line.textContent.includes('approved step scale')),
      undefined, 'the step approval in the conversation');
    await textOf('step-detail', 'this step, on its own', 'the step marked approved');
    await byTestId('preview-button').click();
    await textOf('preview-denied-scale', 'no-kube-system-writes', 'the policy denial in the preview');
    await until(() => [...document.querySelectorAll('[data-testid="denial"][data-source="preview"]')]
      .some((item) => item.textContent.includes('no-kube-system-writes')), undefined, 'the denial listed with its reason');
    await byTestId('approve-button').click();
    await textOf('plan-status', 'approved', 'the plan status after approving');
    await byTestId('run-button').click();
    await until(() => document.querySelector('[data-testid="dag-node-scale"]')?.dataset.state === 'failed',
      undefined, 'the denied step failing');
    await textOf('plan-status', 'failed', 'the plan outcome');
    await until(() => [...document.querySelectorAll('[data-testid="denial"][data-source="step"]')]
      .some((item) => item.textContent.includes('denied by policy')), undefined, 'the step failure listed with its reason');
    expect(await byTestId('restore-button').isHidden(), 'a restore button on a thread that changed nothing');
  });

  await stage('rejected', async () => {
    await ask('scale web to 5 replicas in shop', 'shop');
    await byTestId('reject-reason').fill('5 is too many');
    await byTestId('reject-button').click();
    await textOf('plan-status', 'rejected', 'the plan status after rejecting');
    await until(() => [...document.querySelectorAll('[data-testid="activity"]')].some((line) => line.textContent.includes('rejected the plan')
      && line.textContent.includes('5 is too many')), undefined, 'the rejection and its reason in the conversation');
    expect(await byTestId('approve-button').isDisabled() && await byTestId('run-button').isDisabled(), 'a rejected plan can still be approved or run');
  });

  await stage('cancelled', async () => {
    await ask('scale web to 4 replicas in shop', 'shop');
    await byTestId('approve-button').click();
    await textOf('plan-status', 'approved', 'the plan status after approving');
    await byTestId('cancel-button').click();
    await textOf('plan-status', 'cancelled', 'the plan status after cancelling');
    await until(() => [...document.querySelectorAll('[data-testid="activity"]')].some((line) => line.textContent.includes('finished: cancelled')),
      undefined, 'the cancellation in the conversation');
  });

  await stage('same-here', async () => {
    // From a similar resolved thread, "do the same here" asks its request again in a new thread.
    const redo = page.locator('[data-testid="similar-list"] li', { hasText: 'scale web to 2 replicas in shop' })
      .locator('[data-testid="similar-redo"]');
    await redo.first().click();
    await until(() => [...document.querySelectorAll('[data-testid="message"][data-role="user"]')]
      .some((message) => message.textContent.includes('scale web to 2 replicas in shop')), undefined, 'the request asked again in a new thread');
    await textOf('thread-title', 'scale web to 2 replicas', 'the new thread');
    await visible('plan-panel', 'the plan of the request asked again');
  });

  await stage('token-link', async () => {
    // The link `deckhand serve` logs with its first admin token: logged in at once,
    // the token kept for the tab but gone from the address bar.
    await page.evaluate(() => sessionStorage.clear());
    await page.goto('about:blank');
    await page.goto(new URL(`/#token=${encodeURIComponent(options.token)}`, options['base-url']).href, { waitUntil: 'load' });
    await visible('app-view', 'the command center from a #token= link');
    await textOf('whoami', options.subject ?? /\S/, 'the caller from the link');
    expect(!page.url().includes('token='), `the token stayed in the address bar: ${page.url()}`);
    expect(await page.evaluate(() => sessionStorage.getItem('deckhand.token')) === options.token, 'the link\'s token was not kept');
    // The same link pasted into a tab that is already open (a same-document navigation),
    // once the app has settled (its start-up navigation must not race the new hash).
    await page.waitForLoadState('networkidle');
    await page.evaluate(() => sessionStorage.clear());
    await page.evaluate((token) => { location.hash = `#token=${encodeURIComponent(token)}`; }, options.token);
    await until(() => sessionStorage.getItem('deckhand.token') !== null && !location.href.includes('token='),
      undefined, 'a link pasted into an open tab logging in');
  });

  await stage('session-ended', async () => {
    // A token revoked mid-session: the next call's 401 sends the person to log in.
    await page.evaluate(() => sessionStorage.setItem('deckhand.token', 'dh_revoked'));
    await byTestId('thread-item').first().click();
    await visible('login-view', 'the login form after a 401');
    await textOf('login-message', '401', 'why the session ended');
    expect(await page.evaluate(() => sessionStorage.getItem('deckhand.token')) === null, 'a refused token stayed stored');
  });
}

// ---------------------------------------------------------------- main

const browser = await chromium.launch({
  executablePath: options.chromium,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
});
let exitCode = 0;
try {
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
  page = await context.newPage();
  page.on('pageerror', (error) => pageProblems.push(`uncaught: ${error.message}`));
  page.on('console', (message) => {
    const text = message.text();
    // 401s and 503s the scenario provokes are logged by Chromium; they are expected.
    if (message.type() === 'error' && !text.startsWith('Failed to load resource')) pageProblems.push(`console: ${text}`);
  });
  const run = { smoke, flow, memory }[scenario];
  await run();
  expect(pageProblems.length === 0, `the page reported problems:\n  ${pageProblems.join('\n  ')}`);
  console.log(`drive.mjs: scenario ${scenario} passed: ${stageNumber} stages, screenshots in ${artifacts}`);
} catch (error) {
  console.error(`drive.mjs: FAILED: ${error instanceof ExpectationFailed ? error.message : (error.stack ?? error)}`);
  if (pageProblems.length) console.error(`page problems:\n  ${pageProblems.join('\n  ')}`);
  exitCode = 1;
} finally {
  await browser.close();
}
process.exit(exitCode);
