-- SQLite only: full-text search over knowledge with FTS5, and an append-only audit log.

-- Contentless (the text lives in knowledge), rows keyed by knowledge.seq; porter
-- stemming so "restarting" finds "restart", as PostgreSQL's english configuration does.
CREATE VIRTUAL TABLE knowledge_fts USING fts5(
    request, response, resolution, tags,
    content = '', contentless_delete = 1, tokenize = 'porter unicode61'
);

CREATE TRIGGER knowledge_fts_insert AFTER INSERT ON knowledge BEGIN
    INSERT INTO knowledge_fts (rowid, request, response, resolution, tags)
    VALUES (NEW.seq, NEW.request, NEW.response,
            NEW.resolution_summary || ' ' || NEW.resolution_steps,
            NEW.tags || ' ' || NEW.keywords);
END;

CREATE TRIGGER knowledge_fts_update
    AFTER UPDATE OF request, response, resolution_summary, resolution_steps, tags, keywords
    ON knowledge BEGIN
    DELETE FROM knowledge_fts WHERE rowid = OLD.seq;
    INSERT INTO knowledge_fts (rowid, request, response, resolution, tags)
    VALUES (NEW.seq, NEW.request, NEW.response,
            NEW.resolution_summary || ' ' || NEW.resolution_steps,
            NEW.tags || ' ' || NEW.keywords);
END;

CREATE TRIGGER knowledge_fts_delete AFTER DELETE ON knowledge BEGIN
    DELETE FROM knowledge_fts WHERE rowid = OLD.seq;
END;

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
