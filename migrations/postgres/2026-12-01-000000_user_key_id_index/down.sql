CREATE INDEX IF NOT EXISTS stored_sessions_user_key_idx ON stored_sessions (user_key);
DROP INDEX IF EXISTS stored_sessions_user_key_id_idx;
