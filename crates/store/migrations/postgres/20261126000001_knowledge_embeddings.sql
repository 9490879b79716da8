-- One embedding vector per knowledge entry, for search by meaning (Database::
-- search_knowledge_hybrid), and ids for LLM usage rows so a replicated store can copy
-- them to the shared database idempotently.
--
-- The vector is its f32 components, little-endian, 4 bytes each (BYTEA; no pgvector: it is
-- not installed everywhere deckhand runs). The model that made it is stored with it: a
-- vector is only ever compared with a query vector of the same model, so changing the
-- model never mixes two vector spaces; entries are re-embedded as they are rewritten.
--
-- No foreign key to knowledge: on a shared database an embedding may be replayed before
-- or without its entry's copy; searches join through knowledge, so an orphan is never
-- returned. Keyed by the entry's id (a UUID), the same on every database, unlike seq.
--
-- The SQLite and PostgreSQL files of this version differ only in the vector's type.
CREATE TABLE knowledge_embeddings (
    knowledge_id  TEXT PRIMARY KEY,
    model         TEXT NOT NULL,
    dimensions    BIGINT NOT NULL CHECK (dimensions > 0),
    vector        BYTEA NOT NULL,
    updated_at    BIGINT NOT NULL
);

-- A UUID per call, made when it is recorded. Rows recorded before this migration keep
-- NULL (unique indexes allow many NULLs on both backends) and are not replicated.
ALTER TABLE llm_usage ADD COLUMN id TEXT;
CREATE UNIQUE INDEX llm_usage_id ON llm_usage (id);
