DROP INDEX CONCURRENTLY IF EXISTS stored_sessions_expires_at_idx;
