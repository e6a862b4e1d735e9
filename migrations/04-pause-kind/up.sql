-- Whether the saved pause is the root's (vanished, empty, unreadable or another directory):
-- such a pause lifts by itself when the directory the mirror was synced from is back, also
-- when it came back while the daemon was stopped. Pauses saved before this column existed
-- read as 0 and wait for `resume`, as they did.
ALTER TABLE mirrors ADD COLUMN paused_for_root INTEGER NOT NULL DEFAULT 0;
