-- stored-session: one row per live session. The cookie id is never stored:
-- `sid` is SHA-256 of it. `data` is an AES-256-GCM envelope bound to `sid`.
-- Times are Unix seconds (BIGINT: no 2038 limit, no time-zone shift).
CREATE TABLE stored_sessions (
    id INTEGER PRIMARY KEY NOT NULL,
    sid BLOB NOT NULL UNIQUE CHECK (length(sid) = 32),
    data BLOB NOT NULL,
    version BIGINT NOT NULL DEFAULT 1,
    user_key BLOB CHECK (user_key IS NULL OR length(user_key) = 32),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX stored_sessions_updated_at_idx ON stored_sessions (updated_at);
CREATE INDEX stored_sessions_created_at_idx ON stored_sessions (created_at);
CREATE INDEX stored_sessions_user_key_idx ON stored_sessions (user_key);
