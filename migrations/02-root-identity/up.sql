-- The identity of the root directory a mirror was synced from (device, inode and the
-- file system's id). Another directory at the same path (the mount point of a disk that
-- is gone, a re-pointed symlink) pauses the mirror instead of being mirrored as deletes.
ALTER TABLE mirrors ADD COLUMN root_dev INTEGER;
ALTER TABLE mirrors ADD COLUMN root_ino INTEGER;
ALTER TABLE mirrors ADD COLUMN root_fsid INTEGER;
