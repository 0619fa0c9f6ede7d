-- stored-session: per-session expiry. `expires_at` is the session's deadline
-- (Unix seconds), recomputed at every write and touch: the earliest of its
-- idle window, the absolute lifetime and its own deadline. NULL (every row
-- written before this migration) means "the store's limits", so existing
-- sessions keep loading; each gets its deadline at its next write or touch.
--
-- Cost on a live database: ADD COLUMN only rewrites the schema (no row is
-- touched); the index build reads the table once and holds SQLite's write
-- lock meanwhile (about 1 s per million rows; readers are not blocked in WAL
-- mode). The index is (expires_at, updated_at): trimming reads one range of
-- it for the rows past their deadline and one for the NULL rows gone idle.
ALTER TABLE stored_sessions ADD COLUMN expires_at BIGINT;
CREATE INDEX stored_sessions_expires_at_idx ON stored_sessions (expires_at, updated_at);
