-- Devserver metadata. Content lives in content-addressed blob files beside this database.
CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    partner_id TEXT NOT NULL,
    -- JSON: {"links_disabled":bool,"require_link_password":bool,"max_link_expiry_days":int|null}
    settings TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    email TEXT NOT NULL,
    name TEXT NOT NULL,
    is_admin INTEGER NOT NULL DEFAULT 0,
    suspended INTEGER NOT NULL DEFAULT 0
);

-- Tokens are stored as SHA-256 hashes; kind is 'access' or 'refresh'.
CREATE TABLE tokens (
    hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id),
    scopes TEXT NOT NULL DEFAULT '',
    expires_at INTEGER,
    used INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);

CREATE TABLE shares (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    description TEXT,
    share_type TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    quota_bytes INTEGER,
    settings TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    modified_at TEXT NOT NULL,
    is_deleted INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE members (
    share_id TEXT NOT NULL REFERENCES shares(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    role TEXT NOT NULL,
    PRIMARY KEY (share_id, user_id)
);

-- Files and folders share one namespace per parent. parent_id '' is the share root.
-- deleted_at is set on soft delete; deleted_root names the item whose delete trashed it,
-- so restoring a folder restores exactly what its delete took.
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    share_id TEXT NOT NULL REFERENCES shares(id),
    parent_id TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('file', 'folder')),
    owner_id TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    modified_by TEXT NOT NULL,
    modified_at TEXT NOT NULL,
    deleted_at TEXT,
    deleted_root TEXT,
    size INTEGER NOT NULL DEFAULT 0,
    sha256 TEXT,
    version INTEGER NOT NULL DEFAULT 0,
    mime_type TEXT
);
CREATE UNIQUE INDEX nodes_live_name ON nodes(share_id, parent_id, name) WHERE deleted_at IS NULL;
CREATE INDEX nodes_parent ON nodes(share_id, parent_id);

CREATE TABLE versions (
    id TEXT PRIMARY KEY,
    file_id TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    version_number INTEGER NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (file_id, version_number)
);

CREATE TABLE upload_sessions (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    share_id TEXT NOT NULL,
    folder_id TEXT NOT NULL,
    file_name TEXT NOT NULL,
    file_size INTEGER NOT NULL,
    chunk_size INTEGER NOT NULL,
    total_chunks INTEGER NOT NULL,
    mime_type TEXT,
    checksum_sha256 TEXT,
    replace_file_id TEXT,
    status TEXT NOT NULL,
    file_id TEXT,
    created_at INTEGER NOT NULL,
    last_activity INTEGER NOT NULL
);

CREATE TABLE session_chunks (
    session_id TEXT NOT NULL REFERENCES upload_sessions(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (session_id, idx)
);

CREATE TABLE links (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    share_id TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    link_type TEXT NOT NULL,
    token TEXT NOT NULL UNIQUE,
    short_code TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    options TEXT NOT NULL DEFAULT '{}',
    download_count INTEGER NOT NULL DEFAULT 0,
    view_count INTEGER NOT NULL DEFAULT 0,
    revoked INTEGER NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT
);

-- Recipient accesses of external links (the link's access log).
CREATE TABLE link_sessions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    link_id TEXT NOT NULL,
    accessed_at TEXT NOT NULL,
    ip TEXT,
    action TEXT NOT NULL,
    email TEXT
);
CREATE INDEX link_sessions_link ON link_sessions(link_id, seq);

-- One row per mutation; seq is the cursor position.
CREATE TABLE changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    share_id TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    change_type TEXT NOT NULL,
    changed_by TEXT NOT NULL,
    changed_at TEXT NOT NULL,
    old_path TEXT,
    new_path TEXT,
    version_id TEXT,
    metadata TEXT
);
CREATE INDEX changes_share ON changes(share_id, seq);

CREATE TABLE devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    device_name TEXT,
    platform TEXT,
    client_version TEXT,
    created_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

CREATE TABLE cursors (
    user_id TEXT NOT NULL,
    share_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    last_sync_at TEXT,
    PRIMARY KEY (user_id, share_id, device_id)
);

CREATE TABLE kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
