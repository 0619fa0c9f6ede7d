-- stored-session: a user's sessions, newest first, read from an index.
-- SessionStore::sessions_of pages by (user_key, id) and stops after one
-- page; with the single-column index PostgreSQL reads every session of the
-- user and sorts them. The new index serves every query the old one did.
-- On a large, busy table, create it beforehand without blocking writes:
--   CREATE INDEX CONCURRENTLY stored_sessions_user_key_id_idx
--       ON stored_sessions (user_key, id);
-- (this migration then finds it and only drops the old index).
CREATE INDEX IF NOT EXISTS stored_sessions_user_key_id_idx ON stored_sessions (user_key, id);
DROP INDEX IF EXISTS stored_sessions_user_key_idx;
