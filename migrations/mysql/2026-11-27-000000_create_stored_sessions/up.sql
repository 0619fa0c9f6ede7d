-- stored-session: one row per live session. The cookie id is never stored:
-- `sid` is SHA-256 of it. `data` is an AES-256-GCM envelope bound to `sid`
-- (LONGBLOB: a BLOB would silently cap sessions at 64 KiB).
-- Times are Unix seconds (BIGINT: no 2038 limit, no time-zone shift).
CREATE TABLE stored_sessions (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    sid BINARY(32) NOT NULL,
    data LONGBLOB NOT NULL,
    version BIGINT NOT NULL DEFAULT 1,
    user_key BINARY(32) NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE KEY stored_sessions_sid_key (sid),
    KEY stored_sessions_updated_at_idx (updated_at),
    KEY stored_sessions_created_at_idx (created_at),
    KEY stored_sessions_user_key_idx (user_key)
) ENGINE = InnoDB;
