-- Plans and the state of their steps. The scheduler records every transition before it
-- announces it, so a restarted deckhand picks a plan up where it stopped: step_states
-- holds each step's latest state (one row, upserted), step_events every transition.
CREATE TABLE plans (
    id          TEXT PRIMARY KEY,
    thread_id   TEXT NOT NULL,
    hash        TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    request     TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE INDEX plans_by_thread ON plans (thread_id, created_at);

CREATE TABLE step_states (
    plan_id     TEXT NOT NULL,
    step_id     TEXT NOT NULL,
    state       TEXT NOT NULL,
    attempt     BIGINT NOT NULL,
    output      TEXT,
    error       TEXT,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (plan_id, step_id)
);

CREATE TABLE step_events (
    plan_id     TEXT NOT NULL,
    step_id     TEXT NOT NULL,
    state       TEXT NOT NULL,
    attempt     BIGINT NOT NULL,
    error       TEXT,
    at          BIGINT NOT NULL
);

CREATE INDEX step_events_by_plan ON step_events (plan_id, at);
