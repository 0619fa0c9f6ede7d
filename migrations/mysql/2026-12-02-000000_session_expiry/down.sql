-- Reverts per-session expiry: sessions that chose their own expiry fall
-- back to the store's limits. Dropping the index is instant; dropping the
-- column rebuilds the table online (reads and writes go on).
SET SESSION lock_wait_timeout = 10;
ALTER TABLE stored_sessions DROP INDEX stored_sessions_expires_at_idx, ALGORITHM = INPLACE, LOCK = NONE;
ALTER TABLE stored_sessions DROP COLUMN expires_at, ALGORITHM = INPLACE, LOCK = NONE;
