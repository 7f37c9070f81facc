-- ban-agent's state (PRAGMA user_version = 1). Read it with sqlite3; see docs/daemon.md.
-- Addresses are text (`192.0.2.7/32`), times Unix milliseconds, `expires_at` NULL for a
-- permanent ban.

-- The kernel's index of each jail: the pinned maps key bans by it.
CREATE TABLE IF NOT EXISTS jails (
    name TEXT PRIMARY KEY,
    id INTEGER NOT NULL UNIQUE
) WITHOUT ROWID;

-- Bans in force, with where they came from (`failures`, `operator`, `fleet (HOST)`...).
CREATE TABLE IF NOT EXISTS bans (
    jail TEXT NOT NULL,
    target TEXT NOT NULL,
    banned_at INTEGER NOT NULL,
    expires_at INTEGER,
    failures INTEGER NOT NULL,
    origin TEXT NOT NULL,
    PRIMARY KEY (jail, target)
) WITHOUT ROWID;

-- How often each target was banned, for `bantime_increment`; pruned by age and count.
-- Keyed by target first: one key serves both a jail's count and every jail's
-- (`overall_jails`), so no second index per entry. (A state made before that has the
-- key the other way round and an index `history_by_target`; both work.)
CREATE TABLE IF NOT EXISTS history (
    jail TEXT NOT NULL,
    target TEXT NOT NULL,
    bans INTEGER NOT NULL,
    last_at INTEGER NOT NULL,
    PRIMARY KEY (target, jail)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS history_by_age ON history (last_at);

-- Failures inside each jail's findtime window (times: the lines' times, comma-separated).
CREATE TABLE IF NOT EXISTS failures (
    jail TEXT NOT NULL,
    target TEXT NOT NULL,
    times TEXT NOT NULL,
    last_at INTEGER NOT NULL,
    PRIMARY KEY (jail, target)
) WITHOUT ROWID;

-- Where each log was read up to: the offset after the last line read and a hash of its
-- first line (the path is bytes, as the file system has it).
CREATE TABLE IF NOT EXISTS positions (
    path BLOB PRIMARY KEY,
    offset INTEGER NOT NULL,
    fingerprint INTEGER
) WITHOUT ROWID;

-- The files rotated away from a log's path that its follower still read, since the app
-- may keep writing to them (Python's FileHandler under logrotate's `create`): where each
-- was read up to, found again by its first line's hash (`seq`: oldest first). Written
-- with the path's row in one transaction.
CREATE TABLE IF NOT EXISTS rotated (
    path BLOB NOT NULL,
    seq INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    fingerprint INTEGER NOT NULL,
    PRIMARY KEY (path, seq)
) WITHOUT ROWID;

-- Where each journal jail read its journal up to (sd-journal cursors).
CREATE TABLE IF NOT EXISTS cursors (
    jail TEXT PRIMARY KEY,
    cursor TEXT NOT NULL
) WITHOUT ROWID;

-- `fleet_id` (the last stream entry of the fleet applied here), `imported` (the
-- state.json taken in).
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
