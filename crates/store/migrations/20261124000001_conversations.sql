-- What happens in threads, and what outlives them: messages, ratings, approvals, API
-- tokens, per-thread event logs, snapshots for restore, the audit log, knowledge, and the
-- outbox of a replicated store. Portable SQL (SQLite and PostgreSQL); what only one
-- backend can do (full-text search, append-only triggers) is in migrations/sqlite and
-- migrations/postgres, merged with these by version when the store migrates.

-- Threads gain the 'restored' status. SQLite cannot alter a CHECK constraint, so the
-- table is rebuilt (the same statements work on PostgreSQL).
CREATE TABLE threads_v2 (
    id          TEXT PRIMARY KEY,
    cluster_id  TEXT NOT NULL,
    user_name   TEXT NOT NULL,
    title       TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('open', 'closed', 'restored')),
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
INSERT INTO threads_v2 (id, cluster_id, user_name, title, status, created_at, updated_at)
    SELECT id, cluster_id, user_name, title, status, created_at, updated_at FROM threads;
DROP TABLE threads;
ALTER TABLE threads_v2 RENAME TO threads;
CREATE INDEX threads_by_creation ON threads (created_at DESC);

-- Named counters, bumped with an upsert inside the transaction that uses the value. The
-- bump is each such transaction's first write, so it also serialises them: SQLite takes
-- its write lock there, PostgreSQL locks the counter's row until commit.
CREATE TABLE counters (
    name   TEXT PRIMARY KEY,
    value  BIGINT NOT NULL
);

CREATE TABLE messages (
    id          TEXT PRIMARY KEY,
    thread_id   TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'agent', 'system')),
    author      TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX messages_by_thread ON messages (thread_id, created_at);

CREATE TABLE ratings (
    id          TEXT PRIMARY KEY,
    thread_id   TEXT NOT NULL,
    score       BIGINT NOT NULL CHECK (score BETWEEN 0 AND 100),
    comment     TEXT NOT NULL,
    rated_by    TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX ratings_by_thread ON ratings (thread_id, created_at);

CREATE TABLE approvals (
    id           TEXT PRIMARY KEY,
    thread_id    TEXT NOT NULL,
    plan_id      TEXT NOT NULL,
    plan_hash    TEXT NOT NULL,
    step_id      TEXT,
    approved_by  TEXT NOT NULL,
    interface    TEXT NOT NULL CHECK (interface IN ('cli', 'api', 'gui', 'slack', 'operator')),
    approved_at  BIGINT NOT NULL
);
CREATE INDEX approvals_by_plan ON approvals (plan_id, approved_at);

-- Only the SHA-256 of a token is kept.
CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    scopes      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

-- Event ids count from 1 per thread (counter 'events:<thread>').
CREATE TABLE thread_events (
    thread_id  TEXT NOT NULL,
    id         BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    payload    TEXT NOT NULL,
    at         BIGINT NOT NULL,
    PRIMARY KEY (thread_id, id)
);

-- One row per (thread, object): the first touch wins. namespace is '' for
-- cluster-scoped objects (NULLs would never conflict in the key). prior is NULL when the
-- thread created the object.
CREATE TABLE snapshots (
    thread_id    TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    api_version  TEXT NOT NULL,
    kind         TEXT NOT NULL,
    namespace    TEXT NOT NULL,
    name         TEXT NOT NULL,
    prior        TEXT,
    taken_at     BIGINT NOT NULL,
    PRIMARY KEY (thread_id, api_version, kind, namespace, name)
);
CREATE INDEX snapshots_by_thread ON snapshots (thread_id, seq);

-- Hash-chained: hash = sha256(canonical encoding of the record including prev_hash).
-- Counter 'audit' holds the last seq appended.
CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY,
    at         BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    thread_id  TEXT,
    subject    TEXT NOT NULL,
    details    TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);

-- Knowledge entries. seq is an integer key for SQLite's full-text index (an INTEGER
-- PRIMARY KEY is SQLite's rowid, stable across VACUUM); PostgreSQL makes it an identity
-- column. Lists are JSON arrays.
CREATE TABLE knowledge (
    seq                 INTEGER PRIMARY KEY,
    id                  TEXT NOT NULL UNIQUE,
    thread_id           TEXT NOT NULL,
    cluster_id          TEXT NOT NULL,
    request             TEXT NOT NULL,
    response            TEXT NOT NULL,
    resolution_summary  TEXT NOT NULL,
    resolution_steps    TEXT NOT NULL,
    tags                TEXT NOT NULL,
    keywords            TEXT NOT NULL,
    rating              BIGINT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE INDEX knowledge_by_thread ON knowledge (thread_id);

-- Writes waiting to be copied to the shared database (a replicated store's local side).
CREATE TABLE outbox (
    seq         INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,
    entity_id   TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
