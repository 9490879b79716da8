-- LLM usage per call (deckhand_llm::UsageRecord): each attempt a backend was asked for
-- (answers, retries, repairs, history summaries), attributed to the thread it served.
--
-- No foreign key to threads: usage is a log of what was spent, kept when a call served
-- no stored thread (`deckhand llm check`, a one-off `ask`) and even if a thread goes.
-- Times are microseconds since the epoch, like every other table.
--
-- PostgreSQL: seq is an identity column. The SQLite file of the same version differs only there.
CREATE TABLE llm_usage (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    thread_id      TEXT,
    at             BIGINT NOT NULL,
    agent          TEXT NOT NULL,
    backend        TEXT NOT NULL,
    model          TEXT NOT NULL,
    -- chat, stream, repair or summary
    purpose        TEXT NOT NULL,
    tokens_in      BIGINT NOT NULL CHECK (tokens_in >= 0),
    tokens_out     BIGINT NOT NULL CHECK (tokens_out >= 0),
    latency_ms     BIGINT NOT NULL CHECK (latency_ms >= 0),
    -- 1 when the backend answered; 0 for a failed call.
    answered       BIGINT NOT NULL CHECK (answered IN (0, 1)),
    -- deckhand_llm::Error::kind and message; NULL when the call went well.
    error_kind     TEXT,
    error_message  TEXT,
    -- Estimated from the configured prices; NULL when none are.
    cost_usd       DOUBLE PRECISION,
    redactions     BIGINT NOT NULL CHECK (redactions >= 0)
);
CREATE INDEX llm_usage_by_thread ON llm_usage (thread_id, at);
