-- The heartbeat ledger: one row per scheduled task (deckhand_runtime::heartbeat), updated
-- before a run starts and after it ends, so a run cut short by a crash shows as started and
-- never finished, and a restarted process knows which slots it missed.
--
-- Portable SQL, the same text in migrations/sqlite and migrations/postgres: the version
-- belongs to the heartbeat issue in both backend folders.
CREATE TABLE heartbeat_ledger (
    task                TEXT PRIMARY KEY,
    -- When the task was first seen (µs): slots before it never run.
    since               BIGINT NOT NULL,
    -- The slot of the latest run started (µs); a claim only ever moves it forward.
    last_scheduled_for  BIGINT,
    last_started_at     BIGINT,
    -- NULL with last_outcome NULL while that run goes on (or after a crash during it).
    last_finished_at    BIGINT,
    -- JSON of runtime::heartbeat::RunOutcome: launched (with its thread), failed, interrupted.
    last_outcome        TEXT,
    runs                BIGINT NOT NULL DEFAULT 0 CHECK (runs >= 0),
    failures            BIGINT NOT NULL DEFAULT 0 CHECK (failures >= 0)
);
