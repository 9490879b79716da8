// The command center: log in with a token, ask, watch the plan and the replies stream
// in, preview, approve, run, restore and rate. State lives here; the server is reached
// only through api.js, and every text from it is set as text (never as HTML).

import { api, ApiError, EventStream, forgetToken, onUnauthenticated, storeToken, storedToken } from './api.js';
import { renderDag, STATE_LABELS } from './dag.js';

const NAMESPACE_KEY = 'deckhand.namespace';
const SIMILAR_LIMIT = 6;
const FINAL_PLAN_STATES = new Set(['succeeded', 'failed', 'cancelled', 'rejected']);

const $ = (id) => document.getElementById(id);

const state = {
  identity: null,
  detail: null, // the open thread (ThreadDetail), kept current by its events
  stream: null,
  selectedStep: null,
  previews: null, // { planId, steps: [StepPreview] } or { planId, error }
  approvedSteps: new Map(), // plan id -> Set of step ids approved one by one
  errors: [], // texts of `error` events in the open thread
  result: null,
  restore: null,
  // Opening a thread replays its events from the first: those up to `replayUntil`
  // were already in the thread's detail, and only add what the detail lacks (the
  // result, restores, who approved what) to the conversation, after `replayAnchor`.
  replayUntil: 0,
  replayAnchor: null,
};

// ---------------------------------------------------------------- small helpers

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key.startsWith('data-') || key.startsWith('aria-') || key === 'role' || key === 'type') {
      node.setAttribute(key, value === true ? '' : String(value));
    } else node[key] = value;
  }
  for (const child of children) if (child !== undefined && child !== null) node.append(child);
  return node;
}

function time(at) {
  const date = new Date(at);
  return Number.isNaN(date.getTime()) ? '' : date.toLocaleString();
}

function notify(message) {
  const notice = $('notice');
  notice.textContent = message;
  notice.hidden = !message;
}

function describe(error) {
  if (error instanceof ApiError) return `${error.message}`;
  return String(error?.message ?? error);
}

/** Runs an action from a button: disables it meanwhile, shows what failed. */
async function act(button, action) {
  notify('');
  if (button) button.disabled = true;
  try {
    await action();
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) notify(describe(error));
  } finally {
    if (button) button.disabled = false;
    renderControls();
  }
}

const currentPlan = () => state.detail?.plans.at(-1) ?? null;
const canAct = () => state.identity && state.identity.scope !== 'viewer';
const threadClosed = () => state.detail?.thread.status === 'closed';

// ---------------------------------------------------------------- session

function showLogin(message) {
  $('app-view').hidden = true;
  $('session-bar').hidden = true;
  $('login-view').hidden = false;
  $('login-message').textContent = message ?? '';
  $('token-input').value = '';
  $('token-input').focus();
}

function endSession(message) {
  state.stream?.close();
  state.stream = null;
  state.detail = null;
  state.identity = null;
  forgetToken();
  notify('');
  showLogin(message);
}

onUnauthenticated(() => endSession('The server refused your token (401): it is wrong, revoked or expired. Log in again.'));

$('login-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const token = $('token-input').value.trim();
  if (!token) return;
  $('login-message').textContent = 'Checking…';
  try {
    const answer = await api.whoami(token);
    storeToken(token);
    await enterApp(answer.identity);
  } catch (error) {
    $('login-message').textContent = error instanceof ApiError && error.status === 401
      ? 'That token was refused (401). Check it and try again.'
      : `Could not log in: ${describe(error)}`;
  }
});

$('logout-button').addEventListener('click', () => endSession('You logged out.'));

async function enterApp(identity) {
  state.identity = identity;
  $('login-view').hidden = true;
  $('app-view').hidden = false;
  $('session-bar').hidden = false;
  $('whoami').textContent = `${identity.subject} · ${identity.scope}`;
  $('scope-note').hidden = canAct();
  await Promise.all([loadNamespaces(), loadThreads()]);
  try {
    await route();
  } catch (error) {
    // A link to a thread that is gone: say so, and offer a new request instead.
    if (error instanceof ApiError && error.status === 401) return;
    notify(describe(error));
    newRequest();
  }
}

async function route() {
  const match = /^#\/threads\/([0-9a-fA-F-]{36})$/.exec(location.hash);
  if (match) await openThread(match[1]);
  else newRequest();
}

function reportUnlessSessionEnded(error) {
  if (!(error instanceof ApiError && error.status === 401)) notify(describe(error));
}

window.addEventListener('hashchange', () => {
  if (location.hash.startsWith('#token=')) {
    // A login link pasted into an open tab: it replaces the session.
    state.stream?.close();
    loginFromLink().catch(reportUnlessSessionEnded);
    return;
  }
  if (!state.identity) return;
  const open = state.detail ? `#/threads/${state.detail.thread.id}` : '';
  if (location.hash !== open) route().catch(reportUnlessSessionEnded);
});

/** Opens a thread by its URL; the open thread again when it is already there. */
function navigate(thread) {
  const hash = `#/threads/${thread}`;
  if (location.hash === hash) openThread(thread).catch(reportUnlessSessionEnded);
  else location.hash = hash;
}

// ---------------------------------------------------------------- namespaces and history

async function loadNamespaces() {
  const select = $('namespace-select');
  const kept = sessionStorage.getItem(NAMESPACE_KEY) ?? '';
  select.replaceChildren(el('option', { value: '', text: 'any namespace' }));
  try {
    const { namespaces } = await api.namespaces();
    for (const name of namespaces) select.append(el('option', { value: name, text: name }));
  } catch (error) {
    if (error.status !== 401) notify(`Namespaces are not available: ${describe(error)}`);
  }
  select.value = [...select.options].some((option) => option.value === kept) ? kept : '';
}

$('namespace-select').addEventListener('change', (event) => {
  sessionStorage.setItem(NAMESPACE_KEY, event.target.value);
});

async function loadThreads() {
  let threads = [];
  try {
    threads = await api.threads();
  } catch (error) {
    if (error.status !== 401) notify(`Threads are not available: ${describe(error)}`);
    return;
  }
  const list = $('thread-list');
  list.replaceChildren();
  for (const thread of threads) {
    const current = state.detail?.thread.id === thread.id;
    const meta = [thread.status, thread.namespace, thread.rating !== undefined ? `rated ${thread.rating}` : null,
      time(thread.created_at)].filter(Boolean).join(' · ');
    const button = el('button', {
      type: 'button',
      class: 'thread-item',
      'data-testid': 'thread-item',
      'data-thread-id': thread.id,
      'data-status': thread.status,
      'aria-current': current ? 'true' : undefined,
    }, el('span', { class: 'thread-item-title', text: thread.title }), el('span', { class: 'thread-item-meta', text: meta }));
    button.addEventListener('click', () => navigate(thread.id));
    list.append(el('li', {}, button));
  }
  $('thread-list-empty').hidden = threads.length > 0;
}

// ---------------------------------------------------------------- threads

function resetThreadState() {
  state.stream?.close();
  state.stream = null;
  state.selectedStep = null;
  state.previews = null;
  state.approvedSteps = new Map();
  state.errors = [];
  state.result = null;
  state.restore = null;
  state.replayUntil = 0;
  state.replayAnchor = null;
  $('messages').dataset.tokenCount = '0';
}

function newRequest() {
  resetThreadState();
  state.detail = null;
  if (location.hash) history.replaceState(null, '', location.pathname);
  $('similar-list').replaceChildren();
  $('similar-empty').hidden = false;
  render();
  $('compose-text').focus();
}

$('new-request-button').addEventListener('click', () => newRequest());

async function openThread(id) {
  const detail = await api.thread(id);
  showThread(detail);
}

/** Shows a thread and follows its events from where `detail` leaves off. */
function showThread(detail) {
  resetThreadState();
  state.detail = detail;
  const hash = `#/threads/${detail.thread.id}`;
  if (location.hash !== hash) history.replaceState(null, '', hash);
  render();
  state.replayUntil = detail.last_event_id;
  state.stream = new EventStream(detail.thread.id, 0, {
    onEvent: applyEvent,
    onState: showLiveState,
  });
  loadSimilar(detail).catch(() => {});
  loadThreads().catch(() => {});
}

function showLiveState(connection, reason) {
  const labels = {
    connecting: 'connecting…',
    live: 'live',
    reconnecting: 'reconnecting…',
    failed: `not connected${reason ? `: ${reason}` : ''}`,
  };
  const status = $('live-status');
  status.textContent = labels[connection] ?? connection;
  status.dataset.state = connection;
}

async function loadSimilar(detail) {
  const request = detail.messages.find((message) => message.role === 'user')?.text ?? detail.thread.title;
  const list = $('similar-list');
  list.replaceChildren();
  let hits = [];
  try {
    hits = await api.knowledge(request.slice(0, 2000), SIMILAR_LIMIT + 1);
  } catch (error) {
    $('similar-empty').textContent = `Knowledge search is not available: ${describe(error)}`;
    $('similar-empty').hidden = false;
    return;
  }
  if (state.detail?.thread.id !== detail.thread.id) return;
  hits = hits.filter((hit) => hit.thread_id !== detail.thread.id).slice(0, SIMILAR_LIMIT);
  for (const hit of hits) {
    const button = el('button', { type: 'button', class: 'similar-item', 'data-testid': 'similar-thread', 'data-thread-id': hit.thread_id },
      el('span', { class: 'similar-title', text: hit.title }),
      el('span', { class: 'similar-meta', text: hit.rating !== undefined ? `rated ${hit.rating}` : 'not rated' }),
      el('span', { class: 'similar-summary', text: hit.summary }));
    button.addEventListener('click', () => navigate(hit.thread_id));
    // Ask again here: a new thread in this cluster with that thread's request; the
    // planner gets the resolved thread among its similar ones.
    const redo = el('button', { type: 'button', class: 'similar-redo secondary', 'data-testid': 'similar-redo',
      'data-thread-id': hit.thread_id, text: 'Do the same here' });
    redo.addEventListener('click', () => act(redo, async () => {
      const detail = await api.createThread(hit.request || hit.title, $('namespace-select').value || undefined);
      showThread(detail);
    }));
    list.append(el('li', {}, button, redo));
  }
  $('similar-empty').textContent = 'No similar threads yet.';
  $('similar-empty').hidden = hits.length > 0;
}

$('compose-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const text = $('compose-text').value.trim();
  if (!text) return;
  act($('compose-send'), async () => {
    if (state.detail) {
      const message = await api.postMessage(state.detail.thread.id, text);
      addMessage(message);
    } else {
      const detail = await api.createThread(text, $('namespace-select').value || undefined);
      showThread(detail);
    }
    $('compose-text').value = '';
  });
});

$('compose-text').addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    $('compose-form').requestSubmit();
  }
});

// ---------------------------------------------------------------- events

function addMessage(message) {
  // The finished message replaces the agent's streamed draft.
  if (message.role === 'agent') document.querySelector(`[data-testid="streaming-reply"][data-agent="${CSS.escape(message.author)}"]`)?.remove();
  const messages = state.detail.messages;
  if (messages.some((known) => known.seq === message.seq)) return;
  messages.push(message);
  messages.sort((a, b) => a.seq - b.seq);
  $('messages').append(messageItem(message));
  scrollMessages();
}

function messageItem(message) {
  return el('li', { class: `message role-${message.role}`, 'data-testid': 'message', 'data-role': message.role, 'data-seq': message.seq },
    el('div', { class: 'message-head' },
      el('span', { class: 'author', text: message.author }),
      el('time', { dateTime: message.at, text: time(message.at) })),
    el('p', { class: 'message-text', text: message.text }));
}

function activityItem(text) {
  return el('li', { class: 'activity', 'data-testid': 'activity', text });
}

function activity(text) {
  $('messages').append(activityItem(text));
  scrollMessages();
}

/** The conversation line an event adds, if any. */
function activityText(kind, data) {
  switch (kind) {
    case 'plan_proposed':
      return `${data.created_by} proposed a plan of ${data.steps?.length ?? 0} steps (${data.hash}).`;
    case 'approval':
    case 'rejection': {
      const what = data.step ? `step ${data.step}` : 'the plan';
      const verb = kind === 'approval' ? 'approved' : 'rejected';
      return `${data.by} ${verb} ${what} (${data.hash})${data.reason ? `: ${data.reason}` : ''}.`;
    }
    case 'plan_finished':
      return `The plan finished: ${data.outcome}.`;
    case 'restore':
      return `Restored: ${(data.restored ?? []).join(', ') || 'nothing to restore'}${data.failed?.length ? `; failed: ${data.failed.join(', ')}` : ''}.`;
    case 'rating':
      return `${data.by} rated the thread ${data.rating}${data.comment ? `: “${data.comment}”` : ''}.`;
    default:
      return null;
  }
}

function noteStepApproval(planId, step) {
  if (!state.approvedSteps.has(planId)) state.approvedSteps.set(planId, new Set());
  state.approvedSteps.get(planId).add(step);
}

/** An event the thread's detail already reflects: only what the detail lacks is kept. */
function replayEvent(event) {
  const data = event.data ?? {};
  if (event.kind === 'message') {
    const item = document.querySelector(`#messages [data-seq="${Number(data.seq)}"]`);
    if (item) state.replayAnchor = item;
    return;
  }
  if (event.kind === 'approval' && data.step) noteStepApproval(data.plan_id, data.step);
  if (event.kind === 'result') state.result = data.text;
  if (event.kind === 'restore') state.restore = data;
  if (event.kind === 'error') state.errors.push(data.message ?? 'an error without a message');
  const text = activityText(event.kind, data);
  if (text) {
    const item = activityItem(text);
    if (state.replayAnchor) state.replayAnchor.after(item);
    else $('messages').prepend(item);
    state.replayAnchor = item;
  }
  if (['approval', 'result', 'restore', 'error'].includes(event.kind)) {
    const plan = currentPlan();
    if (plan) renderStep(plan);
    renderOutcome();
    renderDenials();
  }
  if (event.id === state.replayUntil) scrollMessages();
}

function scrollMessages() {
  const list = $('messages');
  list.scrollTop = list.scrollHeight;
}

function appendToken({ agent, text }) {
  const list = $('messages');
  list.dataset.tokenCount = String(Number(list.dataset.tokenCount) + 1);
  let draft = list.querySelector(`[data-testid="streaming-reply"][data-agent="${CSS.escape(agent)}"]`);
  if (!draft) {
    draft = el('li', { class: 'message role-agent streaming', 'data-testid': 'streaming-reply', 'data-agent': agent, 'aria-busy': 'true' },
      el('div', { class: 'message-head' }, el('span', { class: 'author', text: agent }), el('span', { class: 'muted', text: 'writing…' })),
      el('p', { class: 'message-text' }));
    list.append(draft);
  }
  draft.querySelector('.message-text').append(document.createTextNode(text));
  scrollMessages();
}

function findPlan(id) {
  return state.detail?.plans.find((plan) => plan.id === id);
}

function applyEvent(event) {
  if (!state.detail || event.thread_id !== state.detail.thread.id) return;
  if (event.id <= state.replayUntil) {
    replayEvent(event);
    return;
  }
  const data = event.data ?? {};
  switch (event.kind) {
    case 'message':
      addMessage(data);
      break;
    case 'token':
      appendToken(data);
      break;
    case 'plan_proposed': {
      const plans = state.detail.plans;
      const known = plans.findIndex((plan) => plan.id === data.id);
      if (known >= 0) plans[known] = data;
      else plans.push(data);
      state.previews = null;
      state.selectedStep = null;
      render();
      activity(activityText(event.kind, data));
      break;
    }
    case 'step': {
      const plan = findPlan(data.plan_id);
      const step = plan?.steps.find((candidate) => candidate.id === data.step_id);
      if (!step) break;
      step.state = data.state;
      step.attempt = data.attempt ?? step.attempt;
      if (data.reason) step.error = data.reason;
      if (data.state === 'running' && !FINAL_PLAN_STATES.has(plan.status)) plan.status = 'running';
      // An approved plan waiting for its run stays approved.
      if (data.state === 'awaiting_approval' && plan.status !== 'approved') plan.status = 'awaiting_approval';
      renderPlan();
      renderDenials();
      break;
    }
    case 'approval':
    case 'rejection': {
      const plan = findPlan(data.plan_id);
      const approved = event.kind === 'approval';
      if (plan && !data.step) {
        plan.status = approved ? 'approved' : 'rejected';
        if (approved) plan.approved_by = data.by;
      } else if (plan && approved) {
        noteStepApproval(plan.id, data.step);
      }
      activity(activityText(event.kind, data));
      renderPlan();
      break;
    }
    case 'plan_finished': {
      const plan = findPlan(data.plan_id);
      if (plan) plan.status = data.outcome;
      activity(activityText(event.kind, data));
      renderPlan();
      refreshDetail();
      break;
    }
    case 'result':
      state.result = data.text;
      renderOutcome();
      break;
    case 'restore':
      state.restore = data;
      activity(activityText(event.kind, data));
      renderOutcome();
      break;
    case 'rating':
      state.detail.thread.rating = data.rating;
      if (data.rating === 100) state.detail.thread.status = 'closed';
      activity(activityText(event.kind, data));
      renderThreadHead();
      renderOutcome();
      loadThreads().catch(() => {});
      break;
    case 'error':
      state.errors.push(data.message ?? 'an error without a message');
      renderDenials();
      break;
    default:
      break;
  }
}

/** Takes outputs and states from the server after a run, keeping the event position. */
async function refreshDetail() {
  const open = state.detail;
  if (!open) return;
  try {
    const fresh = await api.thread(open.thread.id);
    if (state.detail !== open) return;
    open.plans = fresh.plans;
    open.thread = fresh.thread;
    renderPlan();
    renderOutcome();
    renderDenials();
  } catch (error) {
    if (error.status !== 401) notify(describe(error));
  }
  loadThreads().catch(() => {});
}

// ---------------------------------------------------------------- rendering

function render() {
  renderThreadHead();
  const list = $('messages');
  list.replaceChildren();
  for (const message of state.detail?.messages ?? []) list.append(messageItem(message));
  renderPlan();
  renderOutcome();
  renderDenials();
  renderControls();
}

function renderThreadHead() {
  const detail = state.detail;
  if (!detail) {
    $('thread-title').textContent = 'New request';
    $('thread-meta').textContent = 'Describe what you want done; deckhand proposes a plan you review before anything changes.';
    $('compose-label').textContent = 'What do you need?';
    $('compose-send').textContent = 'Ask';
    $('live-status').textContent = '';
  } else {
    const thread = detail.thread;
    $('thread-title').textContent = thread.title;
    const parts = [`by ${thread.user}`, thread.namespace ? `namespace ${thread.namespace}` : null,
      thread.status === 'closed' ? 'closed' : 'open', thread.rating !== undefined ? `rated ${thread.rating}` : null];
    $('thread-meta').textContent = parts.filter(Boolean).join(' · ');
    $('thread-meta').dataset.status = thread.status;
    $('compose-label').textContent = threadClosed() ? 'This thread is closed.' : 'Reply or refine the request';
    $('compose-send').textContent = 'Send';
  }
  renderControls();
}

function renderPlan() {
  const plan = currentPlan();
  $('plan-panel').hidden = !plan;
  if (!plan) {
    $('preview-panel').hidden = true;
    return;
  }
  $('plan-status').textContent = plan.status.replaceAll('_', ' ');
  $('plan-status').dataset.status = plan.status;
  $('plan-hash').textContent = plan.hash;
  $('plan-by').textContent = `${plan.steps.length} steps by ${plan.created_by}${plan.approved_by ? ` · approved by ${plan.approved_by}` : ''}`;
  if (state.selectedStep && !plan.steps.some((step) => step.id === state.selectedStep)) state.selectedStep = null;
  renderDag($('plan-dag'), plan.steps, {
    selected: state.selectedStep,
    onSelect: (id) => {
      state.selectedStep = id;
      renderPlan();
      document.querySelector(`[data-testid="dag-node-${CSS.escape(id)}"]`)?.focus();
    },
  });
  renderStep(plan);
  renderPreview(plan);
  renderControls();
}

function fact(list, term, value) {
  list.append(el('dt', { text: term }), el('dd', { text: value }));
}

function renderStep(plan) {
  const panel = $('step-detail');
  const step = plan.steps.find((candidate) => candidate.id === state.selectedStep);
  panel.hidden = !step;
  if (!step) return;
  $('step-title').textContent = `${step.title} (${step.id})`;
  const facts = $('step-facts');
  facts.replaceChildren();
  fact(facts, 'State', `${STATE_LABELS[step.state] ?? step.state}${step.attempt ? `, attempt ${step.attempt}` : ''}`);
  fact(facts, 'Agent', step.agent);
  fact(facts, 'Tool', step.tool);
  fact(facts, 'Changes', step.mutating ? 'the cluster: waits for approval' : 'nothing (read-only)');
  fact(facts, 'After', step.depends_on.length ? step.depends_on.join(', ') : 'nothing: runs first');
  if (state.approvedSteps.get(plan.id)?.has(step.id)) fact(facts, 'Approved', 'this step, on its own');
  if (step.rationale) fact(facts, 'Why', step.rationale);
  if (step.error) fact(facts, 'Reason', step.error);
  if (step.output !== undefined) fact(facts, 'Output', JSON.stringify(step.output));
  $('step-input').textContent = JSON.stringify(step.input, null, 2);
}

function diffView(diff) {
  const pre = el('pre', { class: 'code diff' });
  for (const line of diff.replace(/\n$/, '').split('\n')) {
    let kind = 'same';
    if (line.startsWith('+++') || line.startsWith('---')) kind = 'file';
    else if (line.startsWith('@@')) kind = 'hunk';
    else if (line.startsWith('+')) kind = 'add';
    else if (line.startsWith('-')) kind = 'del';
    pre.append(el('span', { class: `diff-${kind}`, text: `${line}\n` }));
  }
  return pre;
}

function renderPreview(plan) {
  const panel = $('preview-panel');
  const preview = state.previews?.planId === plan.id ? state.previews : null;
  panel.hidden = !preview;
  const list = $('preview-list');
  list.replaceChildren();
  if (!preview) return;
  if (preview.error) {
    list.append(el('p', { class: 'warning', 'data-testid': 'preview-error', text: `No preview: ${preview.error}` }));
    return;
  }
  if (FINAL_PLAN_STATES.has(plan.status) && !FINAL_PLAN_STATES.has(preview.planStatus)) {
    list.append(el('p', { class: 'muted', 'data-testid': 'preview-stale',
      text: `Previewed before the plan ${plan.status}: the live objects may have changed since. Preview again to compare with them now.` }));
  }
  if (preview.steps.length === 0) {
    list.append(el('p', { class: 'muted', 'data-testid': 'preview-empty', text: 'No step of this plan changes anything.' }));
    return;
  }
  for (const step of preview.steps) {
    const article = el('article', { class: 'preview', 'data-testid': `preview-${step.step_id}` },
      el('h3', { text: `${step.step_id}: ${step.target}` }),
      el('p', { class: 'muted', text: `tool ${step.tool}` }));
    if (step.denied_by.length) {
      article.append(el('p', { class: 'denied-head', text: 'Denied by policy:' }),
        el('ul', { class: 'denied', 'data-testid': `preview-denied-${step.step_id}` },
          ...step.denied_by.map((reason) => el('li', { text: reason }))));
    } else {
      article.append(el('p', { class: 'allowed', 'data-testid': `preview-allowed-${step.step_id}`, text: 'Allowed by every policy.' }));
    }
    article.append(el('h4', { text: 'Manifest' }), el('pre', { class: 'code', 'data-testid': `preview-yaml-${step.step_id}`, text: step.yaml }));
    article.append(el('h4', { text: 'Diff against the live object' }));
    if (step.diff) {
      const diff = diffView(step.diff);
      diff.dataset.testid = `preview-diff-${step.step_id}`;
      article.append(diff);
    } else {
      article.append(el('p', { class: 'muted', 'data-testid': `preview-diff-${step.step_id}`, text: 'New object: nothing live to compare with.' }));
    }
    list.append(article);
  }
}

function changedSomething() {
  return (state.detail?.plans ?? []).some((plan) =>
    plan.steps.some((step) => step.mutating && step.state === 'succeeded'));
}

function renderOutcome() {
  const detail = state.detail;
  $('outcome-panel').hidden = !detail;
  if (!detail) return;
  const plan = currentPlan();
  const result = state.result ?? (plan && FINAL_PLAN_STATES.has(plan.status) ? `The plan ${plan.status}.` : null);
  $('result-text').textContent = result ?? 'Nothing has run yet.';
  $('restore-box').hidden = !changedSomething() && !state.restore;
  const restored = $('restore-result');
  restored.replaceChildren();
  if (state.restore) {
    const items = [
      ...(state.restore.restored ?? []).map((what) => el('li', { 'data-testid': 'restored-item', text: `restored ${what}` })),
      ...(state.restore.failed ?? []).map((what) => el('li', { class: 'warning', 'data-testid': 'restore-failed-item', text: `not restored: ${what}` })),
    ];
    restored.append(items.length ? el('ul', {}, ...items) : el('p', { class: 'muted', text: 'Nothing needed restoring.' }));
  }
  const thread = detail.thread;
  $('rating-status').textContent = thread.rating !== undefined
    ? `Rated ${thread.rating}${thread.status === 'closed' ? ': the thread is closed.' : '.'}`
    : 'Not rated yet.';
}

function renderDenials() {
  const list = $('denial-list');
  list.replaceChildren();
  const items = [];
  for (const plan of state.detail?.plans ?? []) {
    for (const step of plan.steps) {
      if (step.state === 'failed' && step.error) items.push(['step', `Step ${step.id} failed: ${step.error}`]);
    }
  }
  const preview = state.previews?.steps ?? [];
  for (const step of preview) {
    for (const reason of step.denied_by) items.push(['preview', `Step ${step.step_id} would be denied (${step.target}): ${reason}`]);
  }
  for (const message of state.errors) items.push(['error', `Error: ${message}`]);
  for (const [source, text] of items) list.append(el('li', { 'data-testid': 'denial', 'data-source': source, text }));
  $('denials-empty').hidden = items.length > 0;
}

function renderControls() {
  const plan = currentPlan();
  const acting = canAct() && !threadClosed();
  const status = plan?.status;
  const open = ['proposed', 'awaiting_approval'].includes(status);
  $('approve-button').disabled = !acting || !open;
  $('reject-button').disabled = !acting || !open;
  $('run-button').disabled = !acting || !['proposed', 'approved', 'awaiting_approval'].includes(status);
  $('cancel-button').disabled = !acting || !['approved', 'running', 'awaiting_approval'].includes(status);
  $('preview-button').disabled = !plan;
  const step = plan?.steps.find((candidate) => candidate.id === state.selectedStep);
  const stepActionable = acting && open && step?.mutating;
  $('step-approve-button').disabled = !stepActionable;
  $('step-reject-button').disabled = !stepActionable;
  $('restore-button').disabled = !canAct();
  $('rating-submit').disabled = !canAct() || threadClosed();
  $('compose-text').disabled = state.detail ? !acting : !canAct();
  $('compose-send').disabled = $('compose-text').disabled;
}

// ---------------------------------------------------------------- actions

function replacePlan(view) {
  const plans = state.detail?.plans;
  if (!plans) return;
  const index = plans.findIndex((plan) => plan.id === view.id);
  if (index >= 0) plans[index] = view;
  renderPlan();
  renderOutcome();
  renderDenials();
}

$('preview-button').addEventListener('click', (event) => act(event.currentTarget, async () => {
  const plan = currentPlan();
  try {
    state.previews = { planId: plan.id, planStatus: plan.status, steps: await api.preview(state.detail.thread.id, plan.id) };
  } catch (error) {
    if (error.status === 401) throw error;
    state.previews = { planId: plan.id, planStatus: plan.status, steps: [], error: describe(error) };
  }
  renderPlan();
  renderDenials();
  $('preview-panel').scrollIntoView({ block: 'nearest' });
}));

$('approve-button').addEventListener('click', (event) => act(event.currentTarget, async () => {
  const plan = currentPlan();
  replacePlan(await api.approve(state.detail.thread.id, plan.id, plan.hash));
}));

$('reject-button').addEventListener('click', (event) => act(event.currentTarget, async () => {
  const plan = currentPlan();
  replacePlan(await api.reject(state.detail.thread.id, plan.id, plan.hash, null, $('reject-reason').value.trim()));
  $('reject-reason').value = '';
}));

$('step-approve-button').addEventListener('click', (event) => act(event.currentTarget, async () => {
  const plan = currentPlan();
  replacePlan(await api.approve(state.detail.thread.id, plan.id, plan.hash, state.selectedStep));
}));

$('step-reject-button').addEventListener('click', (event) => act(event.currentTarget, async () => {
  const plan = currentPlan();
  replacePlan(await api.reject(state.detail.thread.id, plan.id, plan.hash, state.selectedStep, $('reject-reason').value.trim()));
}));

$('run-button').addEventListener('click', (event) => act(event.currentTarget, async () => {
  const plan = currentPlan();
  replacePlan(await api.run(state.detail.thread.id, plan.id));
}));

$('cancel-button').addEventListener('click', (event) => act(event.currentTarget, async () => {
  const plan = currentPlan();
  replacePlan(await api.cancel(state.detail.thread.id, plan.id));
}));

$('restore-button').addEventListener('click', (event) => act(event.currentTarget, async () => {
  state.restore = await api.restore(state.detail.thread.id);
  renderOutcome();
}));

$('rating-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const rating = Number($('rating-input').value);
  if (!Number.isInteger(rating) || rating < 0 || rating > 100) {
    notify('A rating is a whole number from 0 to 100.');
    return;
  }
  act($('rating-submit'), async () => {
    const comment = $('rating-comment').value.trim();
    const summary = await api.rate(state.detail.thread.id, rating, comment || undefined);
    state.detail.thread = summary;
    renderThreadHead();
    renderOutcome();
    await loadThreads();
  });
});

// ---------------------------------------------------------------- start

/** A `#token=…` link (deckhand serve logs one with the first admin token) logs in. */
async function loginFromLink() {
  const match = /^#token=([^&]+)$/.exec(location.hash);
  if (!match) return false;
  // Out of the address bar and the history before anything else: a token is a secret.
  history.replaceState(null, '', location.pathname);
  let token;
  try {
    token = decodeURIComponent(match[1]).trim();
  } catch {
    showLogin('The link\'s token is not readable. Paste the token instead.');
    return true;
  }
  try {
    const answer = await api.whoami(token);
    storeToken(token);
    await enterApp(answer.identity);
  } catch (error) {
    showLogin(error instanceof ApiError && error.status === 401
      ? 'The link\'s token was refused (401). Paste a valid token.'
      : `Could not log in: ${describe(error)}`);
  }
  return true;
}

async function boot() {
  if (await loginFromLink()) return;
  if (!storedToken()) {
    showLogin();
    return;
  }
  try {
    const answer = await api.whoami();
    await enterApp(answer.identity);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) showLogin(`Could not reach deckhand: ${describe(error)}`);
  }
}

boot();
