-- The change-log follower of a mirror whose entries are not in memory (a big mirror, idle,
-- issue 20 item 4) looks up the items of each page of rows by remote id.
CREATE INDEX entries_remote_id ON entries(mirror_id, remote_id);
