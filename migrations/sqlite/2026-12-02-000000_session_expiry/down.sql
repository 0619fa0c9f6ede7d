-- Reverts per-session expiry: sessions that chose their own expiry fall
-- back to the store's limits. DROP COLUMN (SQLite 3.35+) rewrites the table.
DROP INDEX IF EXISTS stored_sessions_expires_at_idx;
ALTER TABLE stored_sessions DROP COLUMN expires_at;
