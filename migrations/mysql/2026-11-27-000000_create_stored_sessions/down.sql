DROP TABLE stored_sessions;
