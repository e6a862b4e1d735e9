-- Content the remote already holds for a mirror, so that the daemon never sends bytes the
-- server has (issue 19, item 5). Both tables are hints: a row that turns out stale (the
-- version pruned, the trash emptied) costs one refused call and the file is uploaded.

-- Every version the mirror gave a remote file, with its content: a file whose new content
-- equals one of its earlier versions is restored from that version instead of uploaded.
CREATE TABLE remote_versions (
    mirror_id INTEGER NOT NULL REFERENCES mirrors(id) ON DELETE CASCADE,
    remote_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (mirror_id, remote_id, version)
) WITHOUT ROWID;
CREATE INDEX remote_versions_content ON remote_versions(mirror_id, remote_id, sha256);

-- Files the mirror moved to the remote trash, by the path they had: one that comes back
-- at that path with the same content is restored from the trash instead of uploaded.
CREATE TABLE trashed (
    mirror_id INTEGER NOT NULL REFERENCES mirrors(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    remote_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    trashed_at INTEGER NOT NULL,
    PRIMARY KEY (mirror_id, path)
) WITHOUT ROWID;

-- A new file whose content a mirrored file has is copied server-side: look it up by hash.
CREATE INDEX entries_content ON entries(mirror_id, sha256);
