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
-- the usual case, leaves it alone.
--
-- The SQLite and PostgreSQL files of this version hold the same triggers in each
-- dialect.
CREATE TABLE knowledge_vectors_generation (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    generation  BIGINT NOT NULL
);
INSERT INTO knowledge_vectors_generation (id, generation) VALUES (1, 0);

CREATE TRIGGER knowledge_embeddings_inserted AFTER INSERT ON knowledge_embeddings BEGIN
    UPDATE knowledge_vectors_generation SET generation = generation + 1 WHERE id = 1;
END;
CREATE TRIGGER knowledge_embeddings_updated AFTER UPDATE ON knowledge_embeddings BEGIN
    UPDATE knowledge_vectors_generation SET generation = generation + 1 WHERE id = 1;
END;
CREATE TRIGGER knowledge_embeddings_deleted AFTER DELETE ON knowledge_embeddings BEGIN
    UPDATE knowledge_vectors_generation SET generation = generation + 1 WHERE id = 1;
END;

CREATE TRIGGER knowledge_vector_entry_inserted AFTER INSERT ON knowledge
WHEN EXISTS (SELECT 1 FROM knowledge_embeddings WHERE knowledge_id = NEW.id) BEGIN
    UPDATE knowledge_vectors_generation SET generation = generation + 1 WHERE id = 1;
END;
CREATE TRIGGER knowledge_vector_entry_updated AFTER UPDATE OF id, rating, created_at ON knowledge
WHEN (OLD.id IS NOT NEW.id OR OLD.rating IS NOT NEW.rating OR OLD.created_at IS NOT NEW.created_at)
    AND EXISTS (SELECT 1 FROM knowledge_embeddings WHERE knowledge_id IN (OLD.id, NEW.id)) BEGIN
    UPDATE knowledge_vectors_generation SET generation = generation + 1 WHERE id = 1;
END;
CREATE TRIGGER knowledge_vector_entry_deleted AFTER DELETE ON knowledge
WHEN EXISTS (SELECT 1 FROM knowledge_embeddings WHERE knowledge_id = OLD.id) BEGIN
    UPDATE knowledge_vectors_generation SET generation = generation + 1 WHERE id = 1;
END;
