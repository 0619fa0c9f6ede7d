-- stored-session: per-session expiry. `expires_at` is the session's deadline
-- (Unix seconds), recomputed at every write and touch: the earliest of its
-- idle window, the absolute lifetime and its own deadline. NULL (every row
-- written before this migration) means "the store's limits", so existing
-- sessions keep loading; each gets its deadline at its next write or touch.
--
-- Online on a live table (MariaDB 10.3+, MySQL 8.0.12+): the column is added
-- INSTANT (metadata only), the index INPLACE with LOCK=NONE (reads and writes
-- go on while it is built). Either statement fails rather than lock the
-- table if the server cannot do that. Both need a brief metadata lock: wait
-- at most 10 s for it (behind a long transaction) instead of stalling every
-- query queued after it, and run it again.
SET SESSION lock_wait_timeout = 10;
ALTER TABLE stored_sessions ADD COLUMN expires_at BIGINT NULL, ALGORITHM = INSTANT;
ALTER TABLE stored_sessions ADD INDEX stored_sessions_expires_at_idx (expires_at, updated_at), ALGORITHM = INPLACE, LOCK = NONE;
