-- A counter of changes to what the hybrid search compares (Database::
-- search_knowledge_hybrid): each process keeps the candidate vectors in memory and reads
-- this one row before a search to know whether its copy is still current, instead of
-- reading every vector again (15 MB at 10 000 candidates of 384 dimensions). Several
-- processes may write the same database, so the counter is kept by triggers, not by the
-- code that writes.
--
-- It moves when a vector is written or deleted, and when an entry that has a vector is
-- inserted (its vector was replayed first), deleted, or changes rating or creation time
-- (what decides whether it is a candidate). Inserting an entry that has no vector yet,
-- the usual case, leaves it alone. Writers of vectors queue on this one row until they
-- commit: vectors are written once per resolved thread, so the queue stays short.
--
-- The SQLite and PostgreSQL files of this version hold the same triggers in each
-- dialect.
CREATE TABLE knowledge_vectors_generation (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    generation  BIGINT NOT NULL
);
INSERT INTO knowledge_vectors_generation (id, generation) VALUES (1, 0);

CREATE FUNCTION knowledge_vectors_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE knowledge_vectors_generation SET generation = generation + 1 WHERE id = 1;
    RETURN NULL;
END
$$;

-- Once per statement: a batch of vectors moves the counter once.
CREATE TRIGGER knowledge_embeddings_changed
AFTER INSERT OR UPDATE OR DELETE ON knowledge_embeddings
FOR EACH STATEMENT EXECUTE FUNCTION knowledge_vectors_changed();

-- A trigger's WHEN cannot hold a subquery on PostgreSQL: the function checks whether
-- the entry has a vector.
CREATE FUNCTION knowledge_vector_entry_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (TG_OP <> 'INSERT' AND EXISTS
            (SELECT 1 FROM knowledge_embeddings WHERE knowledge_id = OLD.id))
       OR (TG_OP <> 'DELETE' AND EXISTS
            (SELECT 1 FROM knowledge_embeddings WHERE knowledge_id = NEW.id)) THEN
        UPDATE knowledge_vectors_generation SET generation = generation + 1 WHERE id = 1;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER knowledge_vector_entry_inserted_or_deleted AFTER INSERT OR DELETE ON knowledge
FOR EACH ROW EXECUTE FUNCTION knowledge_vector_entry_changed();
CREATE TRIGGER knowledge_vector_entry_updated AFTER UPDATE OF id, rating, created_at ON knowledge
FOR EACH ROW
WHEN (OLD.id IS DISTINCT FROM NEW.id OR OLD.rating IS DISTINCT FROM NEW.rating
      OR OLD.created_at IS DISTINCT FROM NEW.created_at)
EXECUTE FUNCTION knowledge_vector_entry_changed();
