//! The change-log follower's tables (migration 05): the sync device registered per
//! (daemon, share) in `sync_devices`, and each mirror's cursor into its share's change
//! log with its repair counters in `sync_cursors`. The cursor is stored verbatim (the API
//! calls it opaque).

use rusqlite::{OptionalExtension, params};

use super::{MirrorId, Store, StoreError};

/// The sync device of one share: its id and the daemon version it was registered with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncDevice {
    pub device_id: String,
    pub registered_version: Option<String>,
}

/// A mirror's position in its share's change log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncCursor {
    pub share_id: String,
    pub cursor: String,
    /// Unix seconds of the last successful read of the log.
    pub read_at: i64,
    /// Remote changes by others repaired toward the local root, since the mirror began.
    pub repairs: u64,
    /// Of those, remote edits superseded by a new version from local.
    pub overwrites: u64,
}

impl Store {
    /// The device registered for `share_id`, if any.
    pub async fn sync_device(&self, share_id: &str) -> Result<Option<SyncDevice>, StoreError> {
        let share = share_id.to_string();
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT device_id, registered_version FROM sync_devices WHERE share_id = ?1",
                [share],
                |r| {
                    Ok(SyncDevice {
                        device_id: r.get(0)?,
                        registered_version: r.get(1)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    /// Keeps `device_id` for `share_id` unless one is kept already; returns the one kept
    /// (so two mirrors of one share that race end up with one device).
    pub async fn keep_sync_device(
        &self,
        share_id: &str,
        device_id: &str,
        now: i64,
    ) -> Result<SyncDevice, StoreError> {
        let (share, dev) = (share_id.to_string(), device_id.to_string());
        self.call(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO sync_devices (share_id, device_id, created_at) VALUES (?1, ?2, ?3)",
                params![share, dev, now],
            )?;
            Ok(c.query_row(
                "SELECT device_id, registered_version FROM sync_devices WHERE share_id = ?1",
                [share],
                |r| {
                    Ok(SyncDevice {
                        device_id: r.get(0)?,
                        registered_version: r.get(1)?,
                    })
                },
            )?)
        })
        .await
    }

    /// Records that the device of `share_id` was registered by daemon `version`.
    pub async fn set_device_registered(
        &self,
        share_id: &str,
        version: &str,
    ) -> Result<(), StoreError> {
        let (share, version) = (share_id.to_string(), version.to_string());
        self.call(move |c| {
            c.execute(
                "UPDATE sync_devices SET registered_version = ?2 WHERE share_id = ?1",
                params![share, version],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn sync_cursor(&self, mirror: MirrorId) -> Result<Option<SyncCursor>, StoreError> {
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT share_id, cursor, read_at, repairs, overwrites FROM sync_cursors WHERE mirror_id = ?1",
                [mirror],
                |r| {
                    Ok(SyncCursor {
                        share_id: r.get(0)?,
                        cursor: r.get(1)?,
                        read_at: r.get(2)?,
                        repairs: r.get::<_, i64>(3)?.max(0) as u64,
                        overwrites: r.get::<_, i64>(4)?.max(0) as u64,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    pub async fn set_sync_cursor(
        &self,
        mirror: MirrorId,
        cursor: SyncCursor,
    ) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO sync_cursors (mirror_id, share_id, cursor, read_at, repairs, overwrites) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    mirror,
                    cursor.share_id,
                    cursor.cursor,
                    cursor.read_at,
                    cursor.repairs as i64,
                    cursor.overwrites as i64
                ],
            )?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_device_per_share_and_a_cursor_per_mirror_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let store = Store::open(&path).unwrap();
            let m = store
                .ensure_mirror("m", "/r", "shr_1", "")
                .await
                .unwrap()
                .id;
            let d = store.keep_sync_device("shr_1", "dev_a", 1).await.unwrap();
            assert_eq!(d.device_id, "dev_a");
            let again = store.keep_sync_device("shr_1", "dev_b", 2).await.unwrap();
            assert_eq!(again.device_id, "dev_a", "the first device stays");
            store.set_device_registered("shr_1", "0.1.0").await.unwrap();
            let c = SyncCursor {
                share_id: "shr_1".into(),
                cursor: "42".into(),
                read_at: 7,
                repairs: 3,
                overwrites: 1,
            };
            store.set_sync_cursor(m, c).await.unwrap();
        }
        let store = Store::open(&path).unwrap();
        let d = store.sync_device("shr_1").await.unwrap().unwrap();
        assert_eq!(d.device_id, "dev_a");
        assert_eq!(d.registered_version.as_deref(), Some("0.1.0"));
        assert_eq!(store.sync_device("shr_2").await.unwrap(), None);
        let m = store.mirrors().await.unwrap()[0].id;
        let c = store.sync_cursor(m).await.unwrap().unwrap();
        assert_eq!(
            (c.cursor.as_str(), c.read_at, c.repairs, c.overwrites),
            ("42", 7, 3, 1)
        );
    }
}
