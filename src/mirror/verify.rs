//! `scaidrivectl verify`: the remote tree under the mirror's base folder compared with what
//! the mirror believes it holds (read from the share's change log when that is cheaper,
//! see `logtree`, else one listing per remote folder), and with `checksums` each
//! remote file's SHA-256 (one metadata GET per file) compared with the local file's, hashed
//! now: the disk is the truth. With `repair` missing items are put back by their remote id
//! (restored from the trash or moved back, see `drift`), and what is gone for good or
//! differs is forgotten so the next pass uploads it again (as a new version where the
//! remote has the name).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::logtree::Remote;
use super::{Engine, VerifyReport};
use crate::remote::{Client, ItemKind};
use crate::store::{self, Effect, EntryKind};

impl Engine {
    /// Reads the remote folder of the mirror (the change log, or a walk) and compares it
    /// with the known entries (plus one metadata GET per file with `checksums`).
    pub(super) async fn verify(&mut self, checksums: bool, repair: bool) -> VerifyReport {
        let loaded = self.ensure_known().await;
        let mut report = VerifyReport {
            mirror: self.name.clone(),
            known_items: self.known.count(),
            ..Default::default()
        };
        let Some(t) = self.target.clone() else {
            report.error = Some("the mirror has not started".into());
            return report;
        };
        if !loaded {
            report.error = Some(format!(
                "cannot read the mirror's entries from the state database {}",
                self.deps.store.path().display()
            ));
            return report;
        }
        let client = self.deps.client.clone();
        // path → (is_dir, id, size): from the change log when that is cheaper, else listed.
        let remote: BTreeMap<String, Remote> = match self.remote_from_log(&t).await {
            Some(r) => r,
            None => {
                let mut r = BTreeMap::new();
                let base = t.base_folder_id.clone();
                if let Err(e) = list_subtree(&client, &t.share_id, base, "", &mut r).await {
                    report.error = Some(e);
                    return report;
                }
                r
            }
        };
        report.remote_items = remote.len();
        let mut drifted = Vec::new();
        for (path, e) in self.known.iter() {
            match remote.get(path) {
                None => {
                    report.missing_remotely.push(path.clone());
                    drifted.push(path.clone());
                }
                Some((is_dir, id, size)) => {
                    let why = if *is_dir != (e.kind == EntryKind::Dir) {
                        Some("kind differs".to_string())
                    } else if *id != e.remote_id {
                        Some(format!("remote id {id}, expected {}", e.remote_id))
                    } else if !is_dir && size.is_some_and(|s| s != e.size) {
                        Some(format!(
                            "remote size {}, expected {}",
                            size.unwrap_or(0),
                            e.size
                        ))
                    } else if checksums && !is_dir {
                        // The disk is the truth, not the store: a silent edit leaves the
                        // store's hash equal to the remote's while the file differs.
                        let expected = match local_sha(&t.root, path).await {
                            Some(Ok(h)) => Some(h),
                            Some(Err(err)) => {
                                report
                                    .different
                                    .push((path.clone(), format!("cannot read it here: {err}")));
                                continue;
                            }
                            // Gone locally: the pass deletes it; compare with the store.
                            None => e.sha256.clone(),
                        };
                        match client.file(id).await {
                            Ok(f) if f.checksum_sha256 != expected => Some(format!(
                                "remote checksum {}, local {}",
                                f.checksum_sha256.unwrap_or_default(),
                                expected.unwrap_or_default()
                            )),
                            Ok(_) => None,
                            Err(err) => Some(format!("cannot read its metadata: {err}")),
                        }
                    } else {
                        None
                    };
                    if let Some(why) = why {
                        report.different.push((path.clone(), why));
                        drifted.push(path.clone());
                    }
                }
            }
        }
        self.seed_others(&remote);
        report.extra_remotely = remote
            .keys()
            .filter(|p| !self.known.contains_key(*p))
            .cloned()
            .collect();
        if repair && !drifted.is_empty() {
            // Missing items are put back by their remote id (restored from the trash,
            // moved back: a renamed folder is one call, not a re-upload of its tree);
            // what is gone for good, or differs, is forgotten so the pass uploads it.
            let (repairs, known) = (self.drift_repairs(), self.known.len());
            let missing = report.missing_remotely.clone();
            let failed = self.put_back_missing(&missing).await;
            if failed > 0 {
                report.error = Some(format!(
                    "repair: {failed} missing item(s) could not be put back for now"
                ));
            }
            let put_back = (self.drift_repairs() - repairs) as usize + (known - self.known.len());
            let effects: Vec<Effect> = report
                .different
                .iter()
                .map(|(p, _)| Effect::RemoveTree(p.clone()))
                .filter(|e| matches!(e, Effect::RemoveTree(p) if self.known.contains_key(p)))
                .collect();
            if let Err(e) = self.deps.store.apply(t.mirror, effects.clone()).await {
                report.error = Some(format!("repair: {e}"));
                return report;
            }
            let before = self.known.len();
            for e in &effects {
                store::apply_to_map(Arc::make_mut(&mut self.known), e);
            }
            report.repaired = put_back + before - self.known.len();
            for p in &drifted {
                self.deps.events.publish(
                    &self.name,
                    crate::events::EventKind::DriftRepaired { path: p.clone() },
                );
            }
        }
        report
    }
}

/// The SHA-256 of the file at `path` under `root` now (on a blocking thread); `None` if
/// it is no longer there.
async fn local_sha(root: &std::path::Path, path: &str) -> Option<std::io::Result<String>> {
    let abs = root.join(path);
    let hashed = tokio::task::spawn_blocking(move || crate::plan::hash_file(&abs))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    match hashed {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        other => Some(other),
    }
}

/// Lists the remote folder `folder` (`None` = share root) and everything below it into
/// `out`, keyed by path under `prefix`: one `/children` call per folder.
pub(super) async fn list_subtree(
    client: &Client,
    share_id: &str,
    folder: Option<String>,
    prefix: &str,
    out: &mut BTreeMap<String, Remote>,
) -> Result<(), String> {
    let mut stack: Vec<(Option<String>, String)> = vec![(folder, prefix.to_string())];
    while let Some((folder, prefix)) = stack.pop() {
        let list = client
            .children(share_id, folder.as_deref())
            .await
            .map_err(|e| {
                format!(
                    "listing {}: {e}",
                    if prefix.is_empty() { "/" } else { &prefix }
                )
            })?;
        for item in list.items {
            let path = if prefix.is_empty() {
                item.name.clone()
            } else {
                format!("{prefix}/{}", item.name)
            };
            let is_dir = item.kind == ItemKind::Folder;
            if is_dir {
                stack.push((Some(item.id.clone()), path.clone()));
            }
            out.insert(path, (is_dir, item.id, item.size));
        }
    }
    Ok(())
}
