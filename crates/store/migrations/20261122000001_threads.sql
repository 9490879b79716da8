-- Threads: one conversation each. Written in SQL that SQLite and PostgreSQL both accept,
-- so one set of migrations serves both stores. Ids are UUIDs as text; times are
-- microseconds since the Unix epoch (exact, sortable, the same type on both).
CREATE TABLE threads (
    id          TEXT PRIMARY KEY,
    cluster_id  TEXT NOT NULL,
    user_name   TEXT NOT NULL,
    title       TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE INDEX threads_by_creation ON threads (created_at DESC);
