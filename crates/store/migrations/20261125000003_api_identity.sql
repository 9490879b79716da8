-- What the HTTP API needs beyond the first token table: the identity a token
-- authenticates as (impersonated on the cluster), who issued it and when it expires;
-- and links from outside conversations (a Slack thread, an Alertmanager group) to
-- deckhand threads, so later messages from there continue the same thread.
ALTER TABLE api_tokens ADD COLUMN subject TEXT NOT NULL DEFAULT '';
ALTER TABLE api_tokens ADD COLUMN groups TEXT NOT NULL DEFAULT '[]';
ALTER TABLE api_tokens ADD COLUMN created_by TEXT NOT NULL DEFAULT '';
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;

CREATE TABLE thread_links (
    link_key    TEXT PRIMARY KEY,
    thread_id   TEXT NOT NULL REFERENCES threads (id),
    created_at  BIGINT NOT NULL
);
CREATE INDEX thread_links_by_thread ON thread_links (thread_id);
