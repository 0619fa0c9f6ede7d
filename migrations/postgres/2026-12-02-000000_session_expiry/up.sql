-- stored-session: per-session expiry. `expires_at` is the session's deadline
-- (Unix seconds), recomputed at every write and touch: the earliest of its
-- idle window, the absolute lifetime and its own deadline. NULL (every row
-- written before this migration) means "the store's limits", so existing
-- sessions keep loading; each gets its deadline at its next write or touch.
--
-- Adding a nullable column without a default only changes the catalog
-- (PostgreSQL 11+: no table rewrite), but it needs a brief ACCESS EXCLUSIVE
-- lock, and waiting for it behind a long transaction would stall every
-- query queued after it: give up after 5 s instead, and run it again.
-- The index comes in the next migration, built CONCURRENTLY.
SET LOCAL lock_timeout = '5s';
ALTER TABLE stored_sessions ADD COLUMN IF NOT EXISTS expires_at BIGINT;
