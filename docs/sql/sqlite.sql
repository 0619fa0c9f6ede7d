-- Every SQL statement stored-session sends to SQLite, recorded by
-- tests/statements.rs through Diesel's instrumentation while it runs every
-- public operation of the store. Generated: do not edit; rewrite with
--   UPDATE_SQL_DOCS=1 cargo test --all-features --test statements
-- (with TEST_POSTGRES_URL and TEST_MYSQL_URL set).
--
-- Each statement once, under the first operation that sends it ("also:"
-- names the others), as sent: comments removed, whitespace collapsed,
-- bind placeholders as Diesel writes them, except that a list of them in
-- `IN (...)` is written `IN (?, ...)` (one placeholder per value). The
-- numbers written into the statistics queries come from the test's clock
-- (2030-03-17) and the default Config. Not listed: what Diesel itself
-- sends while establishing a connection, before instrumentation sees it
-- (none on SQLite).
--
-- Operations that send nothing:
--   load: malformed cookie
--   save: no change

-- connection setup (every new connection)
PRAGMA busy_timeout = 5000;
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;

-- open_migrated (new database: migrations, start-up check)
--   also: open (start-up check); open_migrated (up to date)
PRAGMA database_list;
--   also: run_migrations (up to date); open_migrated (up to date)
CREATE TABLE IF NOT EXISTS __diesel_schema_migrations ( version VARCHAR(50) PRIMARY KEY NOT NULL, run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP );
--   also: run_migrations (up to date); open_migrated (up to date)
SELECT `__diesel_schema_migrations`.`version` FROM `__diesel_schema_migrations` ORDER BY `__diesel_schema_migrations`.`version` DESC;
BEGIN;
CREATE TABLE stored_sessions ( id INTEGER PRIMARY KEY NOT NULL, sid BLOB NOT NULL UNIQUE CHECK (length(sid) = 32), data BLOB NOT NULL, version BIGINT NOT NULL DEFAULT 1, user_key BLOB CHECK (user_key IS NULL OR length(user_key) = 32), created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL );
CREATE INDEX stored_sessions_updated_at_idx ON stored_sessions (updated_at);
CREATE INDEX stored_sessions_created_at_idx ON stored_sessions (created_at);
CREATE INDEX stored_sessions_user_key_idx ON stored_sessions (user_key);
INSERT INTO `__diesel_schema_migrations` (`version`) VALUES (?);
--   also: save: write conflict (per-key merge under the row lock); save: emptied after a write conflict (locked delete); save: write to a row deleted meanwhile (locked, nothing written); save: renew (anonymous); save: renew with login (user lock); save: renew after a write conflict (locked renew, user lock); save: login beyond max_sessions_per_user (cap); revoke_others; revoke_user
COMMIT;
ALTER TABLE stored_sessions ADD COLUMN expires_at BIGINT;
CREATE INDEX stored_sessions_expires_at_idx ON stored_sessions (expires_at, updated_at);
--   also: open (start-up check); open_migrated (up to date); check
SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'stored_sessions';
--   also: open (start-up check); open_migrated (up to date); check
SELECT `stored_sessions`.`sid`, `stored_sessions`.`data`, `stored_sessions`.`version`, `stored_sessions`.`created_at`, `stored_sessions`.`updated_at` FROM `stored_sessions` WHERE ((`stored_sessions`.`updated_at` > ?) AND (((`stored_sessions`.`created_at` + ?) > ?) AND (coalesce(`stored_sessions`.`expires_at`, (`stored_sessions`.`updated_at` + ?)) > ?))) ORDER BY `stored_sessions`.`updated_at` DESC LIMIT ?;

-- save: a new session (create)
--   also: save: renew (anonymous); save: renew with login (user lock); save: renew after a write conflict (locked renew, user lock); save: login beyond max_sessions_per_user (cap)
INSERT INTO stored_sessions (sid, data, version, user_key, created_at, updated_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?);

-- load
--   also: load: unknown id; save: write conflict (per-key merge under the row lock); save: emptied after a write conflict (locked delete); save: write to a row deleted meanwhile (locked, nothing written); save: renew after a write conflict (locked renew, user lock); load: expired
SELECT data, version, created_at, updated_at FROM stored_sessions WHERE sid = ? AND created_at + 0 > ? AND COALESCE(expires_at, updated_at + ?) > ?;

-- save: data changed
--   also: save: write conflict (per-key merge under the row lock); save: emptied after a write conflict (locked delete); save: write to a row deleted meanwhile (locked, nothing written); save: renew after a write conflict (locked renew, user lock)
UPDATE stored_sessions SET data = ?, version = ? WHERE sid = ? AND version = ? AND created_at + 0 > ? AND COALESCE(expires_at, updated_at + ?) > ?;

-- save: no change, idle clock due (touch)
UPDATE stored_sessions SET updated_at = ?, expires_at = ? WHERE sid = ? AND created_at + 0 > ? AND COALESCE(expires_at, updated_at + ?) > ?;

-- save: data changed, idle clock due
--   also: save: expiry changed
UPDATE stored_sessions SET data = ?, version = ?, updated_at = ?, expires_at = ? WHERE sid = ? AND version = ? AND created_at + 0 > ? AND COALESCE(expires_at, updated_at + ?) > ?;

-- save: user bound (login without renew)
UPDATE stored_sessions SET data = ?, version = ?, user_key = ? WHERE sid = ? AND version = ? AND created_at + 0 > ? AND COALESCE(expires_at, updated_at + ?) > ?;

-- save: user bound, idle clock due
--   also: save: write conflict (per-key merge under the row lock)
UPDATE stored_sessions SET data = ?, version = ?, updated_at = ?, expires_at = ?, user_key = ? WHERE sid = ? AND version = ? AND created_at + 0 > ? AND COALESCE(expires_at, updated_at + ?) > ?;

-- save: write conflict (per-key merge under the row lock)
--   also: save: emptied after a write conflict (locked delete); save: write to a row deleted meanwhile (locked, nothing written); save: renew (anonymous); save: renew with login (user lock); save: renew after a write conflict (locked renew, user lock); save: login beyond max_sessions_per_user (cap); revoke_others; revoke_user
BEGIN IMMEDIATE;

-- save: emptied (delete at the version read)
--   also: save: emptied after a write conflict (locked delete); save: renew (anonymous); save: renew with login (user lock); save: renew after a write conflict (locked renew, user lock)
DELETE FROM `stored_sessions` WHERE ((`stored_sessions`.`sid` = ?) AND (`stored_sessions`.`version` = ?));

-- save: emptied after a write conflict (locked delete)
--   also: destroy (by cookie value); save: renew after a write conflict (locked renew, user lock); save: destroy; revoke (one session, by handle)
DELETE FROM `stored_sessions` WHERE (`stored_sessions`.`sid` = ?);

-- save: login beyond max_sessions_per_user (cap)
SELECT `stored_sessions`.`id` FROM `stored_sessions` WHERE (`stored_sessions`.`sid` = ?) LIMIT ?;
SELECT `stored_sessions`.`id` FROM `stored_sessions` WHERE (((`stored_sessions`.`id` < ?) AND (((`stored_sessions`.`created_at` + ?) > ?) AND (coalesce(`stored_sessions`.`expires_at`, (`stored_sessions`.`updated_at` + ?)) > ?))) AND (`stored_sessions`.`user_key` = ?)) ORDER BY `stored_sessions`.`id` DESC LIMIT ?;
DELETE FROM `stored_sessions` WHERE ((`stored_sessions`.`user_key` IN (?, ...)) AND (`stored_sessions`.`id` <= ?));

-- sessions_of
SELECT `stored_sessions`.`id`, `stored_sessions`.`sid`, `stored_sessions`.`data`, `stored_sessions`.`version`, `stored_sessions`.`created_at`, `stored_sessions`.`updated_at` FROM `stored_sessions` WHERE (((`stored_sessions`.`id` < ?) AND (((`stored_sessions`.`created_at` + ?) > ?) AND (coalesce(`stored_sessions`.`expires_at`, (`stored_sessions`.`updated_at` + ?)) > ?))) AND (`stored_sessions`.`user_key` = ?)) ORDER BY `stored_sessions`.`id` DESC LIMIT ?;

-- revoke (one session, by handle)
SELECT `stored_sessions`.`sid`, `stored_sessions`.`user_key` FROM `stored_sessions` WHERE ((`stored_sessions`.`id` = ?) AND (((`stored_sessions`.`created_at` + ?) > ?) AND (coalesce(`stored_sessions`.`expires_at`, (`stored_sessions`.`updated_at` + ?)) > ?))) LIMIT ?;

-- revoke_others
DELETE FROM `stored_sessions` WHERE ((`stored_sessions`.`user_key` IN (?, ...)) AND (`stored_sessions`.`sid` != ?));

-- revoke_user
DELETE FROM `stored_sessions` WHERE (`stored_sessions`.`user_key` IN (?, ...));

-- stats
SELECT COUNT(*), min(`stored_sessions`.`updated_at`), max(`stored_sessions`.`updated_at`) FROM `stored_sessions` WHERE (((`stored_sessions`.`created_at` + ?) > ?) AND (coalesce(`stored_sessions`.`expires_at`, (`stored_sessions`.`updated_at` + ?)) > ?)) LIMIT ?;
--   also: Trim::count
SELECT COUNT(*) FROM `stored_sessions` WHERE NOT ((((`stored_sessions`.`created_at` + ?) > ?) AND (coalesce(`stored_sessions`.`expires_at`, (`stored_sessions`.`updated_at` + ?)) > ?)));
SELECT CAST(v AS BIGINT) AS v, CAST(rn AS BIGINT) AS rn, CAST(cnt AS BIGINT) AS cnt FROM (SELECT v, CAST(ROW_NUMBER() OVER (ORDER BY v) AS BIGINT) AS rn, CAST(COUNT(*) OVER () AS BIGINT) AS cnt FROM (SELECT length(data) AS v FROM stored_sessions WHERE created_at > 1897408964 AND COALESCE(expires_at, updated_at + 2592000) > 1900000964) AS vals) AS ranked WHERE rn = 1 OR rn = cnt OR (rn * 100 >= 50 * cnt AND (rn - 1) * 100 < 50 * cnt) OR (rn * 100 >= 90 * cnt AND (rn - 1) * 100 < 90 * cnt) OR (rn * 100 >= 99 * cnt AND (rn - 1) * 100 < 99 * cnt);
SELECT CAST(v AS BIGINT) AS v, CAST(rn AS BIGINT) AS rn, CAST(cnt AS BIGINT) AS cnt FROM (SELECT v, CAST(ROW_NUMBER() OVER (ORDER BY v) AS BIGINT) AS rn, CAST(COUNT(*) OVER () AS BIGINT) AS cnt FROM (SELECT COUNT(*) AS v FROM stored_sessions WHERE user_key IS NOT NULL AND created_at > 1897408964 AND COALESCE(expires_at, updated_at + 2592000) > 1900000964 GROUP BY user_key) AS vals) AS ranked WHERE rn = 1 OR rn = cnt OR (rn * 100 >= 50 * cnt AND (rn - 1) * 100 < 50 * cnt) OR (rn * 100 >= 90 * cnt AND (rn - 1) * 100 < 90 * cnt) OR (rn * 100 >= 99 * cnt AND (rn - 1) * 100 < 99 * cnt);
SELECT CAST(CASE WHEN created_at >= 1900000964 THEN 0 ELSE (1900000964 - created_at) / 3600 END AS BIGINT) AS h, CAST(COUNT(*) AS BIGINT) AS n FROM stored_sessions WHERE created_at >= 1899914565 AND created_at > 1897408964 AND COALESCE(expires_at, updated_at + 2592000) > 1900000964 GROUP BY 1;
SELECT CAST(CASE WHEN updated_at >= 1900000964 THEN 0 ELSE (1900000964 - updated_at) / 3600 END AS BIGINT) AS h, CAST(COUNT(*) AS BIGINT) AS n FROM stored_sessions WHERE updated_at >= 1899914565 AND created_at > 1897408964 AND COALESCE(expires_at, updated_at + 2592000) > 1900000964 GROUP BY 1;
SELECT substr(data, 3, 4) AS kid, CAST(COUNT(*) AS BIGINT) AS n FROM stored_sessions WHERE created_at > 1897408964 AND COALESCE(expires_at, updated_at + 2592000) > 1900000964 GROUP BY substr(data, 3, 4);

-- Trim::run (batched, each expiry rule)
--   also: trim_inactive; Trimmer (one run)
SELECT `stored_sessions`.`id` FROM `stored_sessions` WHERE (`stored_sessions`.`expires_at` <= ?) ORDER BY `stored_sessions`.`expires_at` ASC, `stored_sessions`.`updated_at` ASC LIMIT ?;
DELETE FROM `stored_sessions` WHERE ((`stored_sessions`.`id` IN (?, ...)) AND ((`stored_sessions`.`expires_at` + ?) <= ?));
--   also: trim_inactive; Trimmer (one run)
SELECT `stored_sessions`.`id` FROM `stored_sessions` WHERE ((`stored_sessions`.`expires_at` IS NULL) AND (`stored_sessions`.`updated_at` <= ?)) ORDER BY `stored_sessions`.`expires_at` ASC, `stored_sessions`.`updated_at` ASC LIMIT ?;
DELETE FROM `stored_sessions` WHERE (((`stored_sessions`.`id` IN (?, ...)) AND ((`stored_sessions`.`expires_at` + ?) IS NULL)) AND ((`stored_sessions`.`updated_at` + ?) <= ?));
--   also: trim_inactive; Trimmer (one run)
SELECT `stored_sessions`.`id` FROM `stored_sessions` WHERE (`stored_sessions`.`created_at` <= ?) ORDER BY `stored_sessions`.`created_at` ASC LIMIT ?;
DELETE FROM `stored_sessions` WHERE ((`stored_sessions`.`id` IN (?, ...)) AND ((`stored_sessions`.`created_at` + ?) <= ?));

-- rotate_keys
SELECT `stored_sessions`.`id`, `stored_sessions`.`sid`, `stored_sessions`.`data`, `stored_sessions`.`version` FROM `stored_sessions` WHERE ((`stored_sessions`.`id` > ?) AND (((`stored_sessions`.`created_at` + ?) > ?) AND (coalesce(`stored_sessions`.`expires_at`, (`stored_sessions`.`updated_at` + ?)) > ?))) ORDER BY `stored_sessions`.`id` ASC LIMIT ?;
UPDATE `stored_sessions` SET `data` = ?, `version` = ?, `user_key` = ? WHERE ((`stored_sessions`.`id` = ?) AND (`stored_sessions`.`version` = ?));

-- revoke_all (SessionStore and Database)
SELECT `stored_sessions`.`id` FROM `stored_sessions` ORDER BY `stored_sessions`.`id` ASC LIMIT ?;
DELETE FROM `stored_sessions` WHERE (`stored_sessions`.`id` IN (?, ...));
