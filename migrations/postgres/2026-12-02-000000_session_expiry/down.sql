-- Reverts per-session expiry: sessions that chose their own expiry fall
-- back to the store's limits. Catalog only (the index goes with the column).
SET LOCAL lock_timeout = '5s';
ALTER TABLE stored_sessions DROP COLUMN IF EXISTS expires_at;
