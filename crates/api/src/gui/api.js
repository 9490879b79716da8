// The command center's only ways to the server: the JSON API under /api/ with the
// person's bearer token, and a thread's WebSocket. A 401 from either ends the session.

const TOKEN_KEY = 'deckhand.token';

/** An answer other than 2xx, with the API's error code and message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let unauthenticated = () => {};

/** Calls `handler(error)` whenever the server refuses the stored token (401). */
export function onUnauthenticated(handler) {
  unauthenticated = handler;
}

export function storedToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function storeToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** How often a call refused for the caller's rate (429) is sent again. */
const RATE_LIMIT_RETRIES = 3;
/** The longest wait before sending it again, whatever `Retry-After` says. */
const MAX_RETRY_WAIT_SECONDS = 10;

/**
 * One API call. `token` overrides the stored token (logging in checks a token before
 * keeping it, and its 401 must not end a session that has not started).
 */
async function call(method, path, body, token) {
  const bearer = token ?? storedToken();
  const headers = { Accept: 'application/json' };
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  for (let attempt = 1; ; attempt += 1) {
    try {
      response = await fetch(path, init);
    } catch (error) {
      throw new ApiError(0, 'network', `deckhand did not answer (${error.message})`);
    }
    // Over the caller's rate: the request was not handled, so it is sent again after
    // the wait the server names (a few times, a few seconds at most).
    if (response.status !== 429 || attempt > RATE_LIMIT_RETRIES) break;
    const wait = Math.min(Number(response.headers.get('Retry-After')) || 1, MAX_RETRY_WAIT_SECONDS);
    await new Promise((resolve) => setTimeout(resolve, wait * 1000));
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const error = new ApiError(
      response.status,
      data?.error ?? 'error',
      data?.message ?? `${response.status} ${response.statusText}`,
    );
    if (response.status === 401 && token === undefined) unauthenticated(error);
    throw error;
  }
  return data;
}

const segment = (value) => encodeURIComponent(String(value));
const planPath = (thread, plan) => `/api/threads/${segment(thread)}/plans/${segment(plan)}`;

export const api = {
  whoami: (token) => call('GET', '/api/whoami', undefined, token),
  namespaces: () => call('GET', '/api/namespaces'),
  threads: () => call('GET', '/api/threads?limit=100'),
  thread: (thread) => call('GET', `/api/threads/${segment(thread)}`),
  createThread: (text, namespace) =>
    call('POST', '/api/threads', namespace ? { text, namespace } : { text }),
  postMessage: (thread, text) => call('POST', `/api/threads/${segment(thread)}/messages`, { text }),
  preview: (thread, plan) => call('GET', `${planPath(thread, plan)}/preview`),
  approve: (thread, plan, hash, step) =>
    call('POST', `${planPath(thread, plan)}/approve`, step ? { hash, step } : { hash }),
  reject: (thread, plan, hash, step, reason) => {
    const body = { hash };
    if (step) body.step = step;
    if (reason) body.reason = reason;
    return call('POST', `${planPath(thread, plan)}/reject`, body);
  },
  run: (thread, plan) => call('POST', `${planPath(thread, plan)}/run`),
  cancel: (thread, plan) => call('POST', `${planPath(thread, plan)}/cancel`),
  restore: (thread) => call('POST', `/api/threads/${segment(thread)}/restore`),
  rate: (thread, rating, comment) =>
    call('POST', `/api/threads/${segment(thread)}/rating`, comment ? { rating, comment } : { rating }),
  knowledge: (q, limit) =>
    call('GET', `/api/knowledge?${new URLSearchParams({ q, limit: String(limit) })}`),
};

/** The longest wait between two reconnection attempts. */
const MAX_RECONNECT_DELAY_MS = 10_000;

/**
 * A thread's events over the WebSocket, resumed after the last event delivered on
 * every reconnect (`?after=N`), so nothing is lost or seen twice. Browsers cannot set
 * headers on a WebSocket: the token goes as the subprotocol `bearer.<token>` next to
 * `deckhand`, which the server selects.
 */
export class EventStream {
  constructor(thread, after, { onEvent, onState }) {
    this.thread = thread;
    this.after = after;
    this.onEvent = onEvent;
    this.onState = onState;
    this.attempts = 0;
    this.closed = false;
    this.connect();
  }

  connect() {
    if (this.closed) return;
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const url = `${scheme}//${location.host}/ws/threads/${segment(this.thread)}?after=${this.after}`;
    let socket;
    try {
      socket = new WebSocket(url, ['deckhand', `bearer.${storedToken() ?? ''}`]);
    } catch (error) {
      // A token with characters no subprotocol may carry.
      this.onState('failed', error.message);
      return;
    }
    this.socket = socket;
    this.onState('connecting');
    socket.addEventListener('open', () => {
      this.attempts = 0;
      this.onState('live');
    });
    socket.addEventListener('message', (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      if (typeof event.id !== 'number' || event.id <= this.after) return;
      this.after = event.id;
      this.onEvent(event);
    });
    socket.addEventListener('close', (close) => {
      if (this.closed) return;
      this.onState('reconnecting', close.reason);
      // A refused upgrade (an expired token's 401) reaches a browser only as 1006:
      // ask the API, whose 401 ends the session; anything else is worth a retry.
      call('GET', '/api/whoami').then(
        () => this.retry(),
        (error) => {
          if (error.status !== 401) this.retry();
        },
      );
    });
  }

  retry() {
    if (this.closed) return;
    const delay = Math.min(500 * 2 ** this.attempts, MAX_RECONNECT_DELAY_MS);
    this.attempts += 1;
    this.timer = setTimeout(() => this.connect(), delay);
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.socket && this.socket.readyState <= WebSocket.OPEN) this.socket.close(1000, 'done');
  }
}
