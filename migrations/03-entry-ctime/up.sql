-- The inode change time (ctime, nanoseconds) of the file an entry was synced from. The
-- kernel moves it on every write and no program can set it back, so an edit that keeps
-- the size and restores the old mtime (`touch -d @OLD`) still shows as a change and is
-- hashed. NULL = unknown (rows from before this migration, items adopted from the remote
-- after a crash): treated as unchanged and filled by the next full pass, without hashing,
-- where size, mtime and inode still match, so an upgrade does not re-hash every file.
ALTER TABLE entries ADD COLUMN ctime_ns INTEGER;
