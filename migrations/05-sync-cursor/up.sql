-- Following the share's change log (issue 18).
-- One registered sync device per (daemon, share): the client-generated id sent to
-- POST /sync/devices, and the daemon version it was last registered with.
CREATE TABLE sync_devices (
    share_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    registered_version TEXT,
    created_at INTEGER NOT NULL
);

-- Each mirror's position in its share's change log (the cursor, stored verbatim), when
-- the log was last read, and how many remote changes the mirror has repaired.
CREATE TABLE sync_cursors (
    mirror_id INTEGER PRIMARY KEY REFERENCES mirrors(id) ON DELETE CASCADE,
    share_id TEXT NOT NULL,
    cursor TEXT NOT NULL,
    read_at INTEGER NOT NULL,
    repairs INTEGER NOT NULL DEFAULT 0,
    overwrites INTEGER NOT NULL DEFAULT 0
);
