//! The engine's in-memory view of a mirror's entries (`BTreeMap<String, Entry>`, what a
//! pass plans against and keeps while idle): loading it from the store and keeping its
//! tree nodes packed. It is the daemon's largest resident structure (W9: a million files),
//! so how it is built matters as much as what an entry holds.

use std::collections::{BTreeMap, HashMap};

use super::model::{ENTRY_COLS, entry_from_row, finish_entry};
use super::{Entry, MirrorId, Store, StoreError};

impl Store {
    /// Every entry of a mirror keyed by path, built on the store's thread straight from
    /// the rows, which come in path order: collected from sorted order, the map is built
    /// in one sweep with every node full (inserting them one by one would search the tree
    /// for each row and leave half-full nodes). No `Vec<Entry>` is handed over to be keyed
    /// by the caller.
    pub async fn entries_map(
        &self,
        mirror: MirrorId,
    ) -> Result<BTreeMap<String, Entry>, StoreError> {
        self.call(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {ENTRY_COLS} FROM entries WHERE mirror_id = ?1 ORDER BY path"
            ))?;
            let rows = stmt.query_map([mirror], entry_from_row)?;
            let mut out = Vec::new();
            for r in rows {
                let e = finish_entry(r?)?;
                out.push((e.path.clone(), e));
            }
            Ok(out.into_iter().collect())
        })
        .await
    }
}

impl Store {
    /// How many entries a mirror has.
    pub async fn entry_count(&self, mirror: MirrorId) -> Result<usize, StoreError> {
        self.call(move |c| {
            let n: i64 = c.query_row(
                "SELECT COUNT(*) FROM entries WHERE mirror_id = ?1",
                [mirror],
                |r| r.get(0),
            )?;
            Ok(n as usize)
        })
        .await
    }

    /// The mirror's entries at these paths (those it has), by path.
    pub async fn entries_at(
        &self,
        mirror: MirrorId,
        paths: Vec<String>,
    ) -> Result<BTreeMap<String, Entry>, StoreError> {
        self.call(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {ENTRY_COLS} FROM entries WHERE mirror_id = ?1 AND path = ?2"
            ))?;
            let mut out = BTreeMap::new();
            for p in paths {
                for r in stmt.query_map(rusqlite::params![mirror, p], entry_from_row)? {
                    let e = finish_entry(r?)?;
                    out.insert(e.path.clone(), e);
                }
            }
            Ok(out)
        })
        .await
    }

    /// The mirror's entries with these remote ids, by remote id (ids it does not hold are
    /// left out): what the change-log follower needs of an unloaded mirror for one page.
    pub async fn entries_by_remote_id(
        &self,
        mirror: MirrorId,
        ids: Vec<String>,
    ) -> Result<HashMap<String, Entry>, StoreError> {
        self.call(move |c| {
            let mut stmt = c.prepare_cached(&by_remote_id_sql())?;
            let mut out = HashMap::new();
            for id in ids {
                for r in stmt.query_map(rusqlite::params![mirror, id], entry_from_row)? {
                    let e = finish_entry(r?)?;
                    out.insert(e.remote_id.clone(), e);
                }
            }
            Ok(out)
        })
        .await
    }

    /// Hands `f` the mirror's entries in path order, one row at a time, on the store's
    /// thread: a comparison with the disk that needs no map of them all (an unloaded
    /// mirror's full pass). A row that cannot be read ends the walk with its error.
    pub async fn visit_entries<T, F>(&self, mirror: MirrorId, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Iterator<Item = Entry>) -> T + Send + 'static,
    {
        self.call(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {ENTRY_COLS} FROM entries WHERE mirror_id = ?1 ORDER BY path"
            ))?;
            let mut failed: Option<StoreError> = None;
            let out = {
                let rows = stmt.query_map([mirror], entry_from_row)?;
                let mut entries =
                    rows.map_while(
                        |r| match r.map_err(StoreError::from).and_then(finish_entry) {
                            Ok(e) => Some(e),
                            Err(e) => {
                                failed = Some(e);
                                None
                            }
                        },
                    );
                f(&mut entries)
            };
            match failed {
                Some(e) => Err(e),
                None => Ok(out),
            }
        })
        .await
    }
}

/// The lookup by remote id. `INDEXED BY`: without statistics SQLite's planner prefers the
/// primary key's `mirror_id` prefix (a scan of the whole mirror per id) to the index on
/// `(mirror_id, remote_id)` when all columns are selected (a W9 run spent minutes per
/// change-log page that way).
fn by_remote_id_sql() -> String {
    format!(
        "SELECT {ENTRY_COLS} FROM entries INDEXED BY entries_remote_id \
         WHERE mirror_id = ?1 AND remote_id = ?2"
    )
}

/// Rebuilds a mirror's in-memory entries with full tree nodes. A `BTreeMap` filled one
/// insert at a time in ascending order (as a pass applies its results in path order)
/// splits each full node in two and leaves it a little over
/// half full for good: ~290 bytes of node per entry instead of ~170. `append` into a
/// non-empty map merges both sides in order and packs every node full, freeing the old
/// nodes as it goes (no copy of all entries at once, unlike `collect`, which gathers
/// them in a vector and sorts it with a scratch buffer of half its size). Same entries,
/// same order.
pub fn compact_map(map: &mut BTreeMap<String, Entry>) {
    let Some((k, v)) = map.pop_first() else {
        return;
    };
    let mut packed = BTreeMap::new();
    packed.insert(k, v);
    packed.append(map);
    *map = packed;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Effect, EntryKind};

    fn entry(path: &str) -> Entry {
        super::super::model::test_entry(path, EntryKind::File)
    }

    #[test]
    fn compacting_the_map_keeps_every_entry_in_order() {
        let mut map = BTreeMap::new();
        for i in 0..5_000 {
            let e = entry(&format!("d{:02}/f{i:05}", i % 37));
            map.insert(e.path.clone(), e);
        }
        let before: Vec<(String, Entry)> = map.clone().into_iter().collect();
        compact_map(&mut map);
        let after: Vec<(String, Entry)> = map.clone().into_iter().collect();
        assert_eq!(after.len(), 5_000);
        assert_eq!(before, after);
        assert_eq!(map.get("d00/f00000").map(|e| e.size), Some(1));
    }

    #[test]
    fn the_lookup_by_remote_id_searches_its_index() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(&dir.path().join("state.db")).unwrap());
        let c = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
        let plan: Vec<String> = c
            .prepare(&format!("EXPLAIN QUERY PLAN {}", by_remote_id_sql()))
            .unwrap()
            .query_map(rusqlite::params![1, "fil_x"], |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            plan,
            ["SEARCH entries USING INDEX entries_remote_id (mirror_id=? AND remote_id=?)"]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_entries_map_holds_every_row_keyed_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("state.db")).unwrap();
        let m = s
            .ensure_mirror("docs", "/data/docs", "shr_1", "")
            .await
            .unwrap()
            .id;
        // More than one tree node's worth, in an order that is not the path order.
        let effects = (0..300)
            .rev()
            .map(|i| Effect::Upsert(entry(&format!("d{}/f{i}", i % 7))))
            .collect();
        s.apply(m, effects).await.unwrap();
        let map = s.entries_map(m).await.unwrap();
        let rows = s.entries(m).await.unwrap();
        assert_eq!(map.len(), 300);
        assert_eq!(
            map.into_iter().collect::<Vec<_>>(),
            rows.into_iter()
                .map(|e| (e.path.clone(), e))
                .collect::<Vec<_>>()
        );
    }
}
