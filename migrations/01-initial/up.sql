-- scaidrived state. Shipped migrations are never edited; add a new NN-name directory.
-- Secrets (tokens, link passwords) are never stored here.

-- One row per configured mirror, keyed by its name in the config.
CREATE TABLE mirrors (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    root TEXT NOT NULL,
    share_id TEXT NOT NULL,
    -- Remote base folder path inside the share ('' = share root).
    remote_path TEXT NOT NULL,
    -- Remote id of the base folder once known ('' = share root).
    base_folder_id TEXT,
    paused_reason TEXT,
    first_pass_done INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);

-- What the mirror knows is on the remote, with the local fingerprint it was synced from.
CREATE TABLE entries (
    mirror_id INTEGER NOT NULL REFERENCES mirrors(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('file', 'dir')),
    remote_id TEXT NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    mtime_ns INTEGER NOT NULL DEFAULT 0,
    inode INTEGER NOT NULL DEFAULT 0,
    sha256 TEXT,
    remote_version INTEGER,
    synced_at INTEGER NOT NULL,
    PRIMARY KEY (mirror_id, path)
) WITHOUT ROWID;
CREATE INDEX entries_inode ON entries(mirror_id, inode);

-- Remote operations started but not yet confirmed (the crash rule).
CREATE TABLE journal (
    id INTEGER PRIMARY KEY,
    mirror_id INTEGER NOT NULL REFERENCES mirrors(id) ON DELETE CASCADE,
    op TEXT NOT NULL,
    path TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL
);

-- Resumable upload sessions and the local fingerprint they were started for.
CREATE TABLE upload_sessions (
    mirror_id INTEGER NOT NULL REFERENCES mirrors(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    session_id TEXT NOT NULL,
    chunk_size INTEGER NOT NULL,
    total_chunks INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    replace_file_id TEXT,
    chunks_done INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (mirror_id, path)
);

-- Items that failed, why, and when to try again.
CREATE TABLE failures (
    mirror_id INTEGER NOT NULL REFERENCES mirrors(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    reason TEXT NOT NULL,
    permanent INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 1,
    first_failed_at INTEGER NOT NULL,
    last_failed_at INTEGER NOT NULL,
    next_retry_at INTEGER NOT NULL,
    PRIMARY KEY (mirror_id, path)
);

-- Sharing links created by the daemon (never the password).
CREATE TABLE links (
    id TEXT PRIMARY KEY,
    mirror_id INTEGER NOT NULL REFERENCES mirrors(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    link_type TEXT NOT NULL,
    options TEXT NOT NULL DEFAULT '{}',
    url TEXT NOT NULL,
    short_url TEXT,
    expires_at TEXT,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
