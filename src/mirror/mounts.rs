//! Mount points below a mirror's root, remembered across restarts. A remembered mount that
//! is not mounted now is *gone*: what the mirror uploaded from it is unknown, not deleted.
//! An unmounted NAS share or USB disk leaves an empty directory (or none, where the
//! automounter removes it), and a pass over it would otherwise trash everything mirrored
//! from it: the mass-delete guard catches that only when the mount held many items.
//!
//! The conductor looks at the mount table after every scan, just before it plans
//! ([`Engine::hide_gone_mounts`]), so an unmount at any moment before the plan is seen. A
//! gone mount's subtree (its mount point included) is left out of the plan on both sides:
//! nothing is deleted or moved there remotely, and files written into the bare mount
//! point meanwhile (which the mount hides again when it is back) are not uploaded. Status
//! lists it; it is back when something is mounted there again. `scaidrivectl resume
//! --allow-deletes` is how an operator says a mount is gone for good: it forgets the gone
//! mounts, and the next pass mirrors the directory as it is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use super::Engine;
use crate::plan::DiskItem;
use crate::relpath::{Escaped, is_within};
use crate::store::Entry;
use crate::watch as local;

/// What the mirror remembers of the mount points below its root.
#[derive(Debug, Default)]
pub(super) struct MountMemory {
    loaded: bool,
    /// Relative path of every mount point seen below the root → its filesystem type.
    seen: BTreeMap<String, String>,
    /// Those of `seen` that are not mounted now.
    gone: BTreeSet<String>,
}

/// What one look at the mount table changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Looked {
    /// A mount point not seen before (the memory must be saved).
    pub learned: bool,
    pub went: Vec<String>,
    pub back: Vec<String>,
}

impl MountMemory {
    /// Takes in the mount points below the root now (relative path → filesystem type).
    pub fn observe(&mut self, now: &BTreeMap<String, String>) -> Looked {
        let mut looked = Looked::default();
        for (rel, fs) in now {
            if self.seen.get(rel) != Some(fs) {
                self.seen.insert(rel.clone(), fs.clone());
                looked.learned = true;
            }
        }
        let gone: BTreeSet<String> = self
            .seen
            .keys()
            .filter(|rel| !now.contains_key(*rel))
            .cloned()
            .collect();
        looked.went = gone.difference(&self.gone).cloned().collect();
        looked.back = self.gone.difference(&gone).cloned().collect();
        self.gone = gone;
        looked
    }

    /// The gone mount points (relative paths), as status shows them.
    pub fn gone(&self) -> impl Iterator<Item = &String> {
        self.gone.iter()
    }

    /// Forgets the gone mounts (the operator said they are gone for good).
    pub fn forget_gone(&mut self) -> usize {
        let n = self.gone.len();
        for rel in std::mem::take(&mut self.gone) {
            self.seen.remove(&rel);
        }
        n
    }

    /// Whether some remembered mount point is not mounted now.
    pub fn any_gone(&self) -> bool {
        !self.gone.is_empty()
    }

    /// Whether `path` lies in a gone mount's subtree (the mount point included).
    pub fn hides(&self, path: &str) -> bool {
        self.gone.iter().any(|g| is_within(path, g))
    }

    /// `known`, `disk` and the renames without what lies in a gone mount's subtree.
    pub fn hide(
        &self,
        known: Arc<BTreeMap<String, Entry>>,
        disk: &mut BTreeMap<String, DiskItem>,
        renames: &mut Vec<(String, String)>,
    ) -> Arc<BTreeMap<String, Entry>> {
        if self.gone.is_empty() {
            return known;
        }
        disk.retain(|p, _| !self.hides(p));
        renames.retain(|(from, to)| !self.hides(from) && !self.hides(to));
        if !known.keys().any(|k| self.hides(k)) {
            return known;
        }
        let mut kept = (*known).clone();
        kept.retain(|k, _| !self.hides(k));
        Arc::new(kept)
    }

    fn to_json(&self) -> String {
        serde_json::to_string(&self.seen).unwrap_or_default()
    }

    fn load(&mut self, json: Option<&str>) {
        self.loaded = true;
        if let Some(seen) = json.and_then(|j| serde_json::from_str(j).ok()) {
            self.seen = seen;
        }
    }
}

/// The mount points strictly below `root` (canonical) in a mount table, by relative path.
/// Mount points whose path is not UTF-8 cannot hold mirrored items and are left out.
pub(super) fn mounts_below(mountinfo: &str, root: &Path) -> BTreeMap<String, String> {
    local::mounts_under(mountinfo, root)
        .into_iter()
        .filter_map(|(p, fs)| {
            let rel = p.strip_prefix(root).ok()?.to_str()?.to_string();
            (!rel.is_empty()).then_some((rel, fs))
        })
        .collect()
}

fn kv_key(mirror: crate::store::MirrorId) -> String {
    format!("mounts:{mirror}")
}

impl Engine {
    /// Looks at the mount table (after the scan, before the plan) and leaves what lies in
    /// a gone mount out of `known`, `disk` and the renames.
    pub(super) async fn hide_gone_mounts(
        &mut self,
        known: Arc<BTreeMap<String, Entry>>,
        disk: &mut BTreeMap<String, DiskItem>,
        renames: &mut Vec<(String, String)>,
    ) -> Arc<BTreeMap<String, Entry>> {
        self.look_at_mounts().await;
        self.mount_memory.hide(known, disk, renames)
    }

    /// Reads the mount table, remembers new mount points below the root (in the store,
    /// so a restart while one is unmounted still knows it), and says when one goes or
    /// comes back.
    pub(super) async fn look_at_mounts(&mut self) {
        let Some(t) = self.target.clone() else { return };
        if !self.mount_memory.loaded {
            let saved = self
                .deps
                .store
                .kv_get(&kv_key(t.mirror))
                .await
                .ok()
                .flatten();
            self.mount_memory.load(saved.as_deref());
        }
        let Ok(canon) = t.root.canonicalize() else {
            return;
        };
        let now = mounts_below(&local::read_mountinfo(), &canon);
        let looked = self.mount_memory.observe(&now);
        if looked.learned {
            self.save_mounts().await;
        }
        if !looked.went.is_empty() && !self.ensure_known().await {
            return;
        }
        for rel in &looked.went {
            let n = self.known.keys().filter(|k| is_within(k, rel)).count();
            let fs = self.mount_memory.seen.get(rel).cloned().unwrap_or_default();
            tracing::warn!(mirror = %self.name, "{} ({fs}) below the root is not mounted any more; its {n} mirrored item(s) are kept remotely until it is mounted again (or `scaidrivectl resume --allow-deletes` says it is gone for good)", Escaped(rel));
        }
        for rel in &looked.back {
            tracing::info!(mirror = %self.name, "{} is mounted again; mirroring it", Escaped(rel));
        }
        if !looked.went.is_empty() || !looked.back.is_empty() {
            self.show_gone_mounts();
        }
    }

    /// `resume --allow-deletes`: the gone mounts are gone for good.
    pub(super) async fn forget_gone_mounts(&mut self) {
        let n = self.mount_memory.forget_gone();
        if n > 0 {
            tracing::warn!(mirror = %self.name, "forgetting {n} unmounted mount point(s); the next pass mirrors those folders as they are now");
            self.save_mounts().await;
            self.show_gone_mounts();
        }
    }

    async fn save_mounts(&self) {
        let Some(t) = &self.target else { return };
        if let Err(e) = self
            .deps
            .store
            .kv_set(&kv_key(t.mirror), &self.mount_memory.to_json())
            .await
        {
            tracing::warn!(mirror = %self.name, "cannot record the mount points below the root: {e}");
        }
    }

    fn show_gone_mounts(&self) {
        let gone: Vec<String> = self
            .mount_memory
            .gone()
            .map(|rel| {
                let fs = self.mount_memory.seen.get(rel).cloned().unwrap_or_default();
                format!("{rel} (was {fs})")
            })
            .collect();
        self.status_tx.send_modify(|s| s.unmounted = gone);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(items: &[(&str, &str)]) -> BTreeMap<String, String> {
        items
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn a_remembered_mount_that_is_not_mounted_is_gone_until_it_is_back() {
        let mut m = MountMemory::default();
        let first = m.observe(&table(&[("nas", "nfs4")]));
        assert!(first.learned && first.went.is_empty());
        let again = m.observe(&table(&[("nas", "nfs4")]));
        assert_eq!(again, Looked::default());
        let went = m.observe(&table(&[]));
        assert_eq!(went.went, vec!["nas".to_string()]);
        assert!(!went.learned);
        assert!(m.hides("nas") && m.hides("nas/a/b") && !m.hides("nasty"));
        let back = m.observe(&table(&[("nas", "nfs4")]));
        assert_eq!(back.back, vec!["nas".to_string()]);
        assert!(!m.hides("nas/a"));
    }

    #[test]
    fn the_memory_survives_a_restart_and_forgetting_ends_it() {
        let mut m = MountMemory::default();
        m.observe(&table(&[("usb", "vfat"), ("nas", "cifs")]));
        let saved = m.to_json();
        let mut after = MountMemory::default();
        after.load(Some(&saved));
        let looked = after.observe(&table(&[("nas", "cifs")]));
        assert_eq!(looked.went, vec!["usb".to_string()]);
        assert_eq!(after.forget_gone(), 1);
        assert!(!after.hides("usb/x"));
        assert_eq!(after.observe(&table(&[("nas", "cifs")])), Looked::default());
        // A corrupt record is an empty memory, not an error.
        let mut bad = MountMemory::default();
        bad.load(Some("{not json"));
        assert!(bad.seen.is_empty() && bad.loaded);
    }

    #[test]
    fn a_gone_mount_is_left_out_of_both_sides_of_the_plan() {
        let mut m = MountMemory::default();
        m.observe(&table(&[("nas", "nfs")]));
        m.observe(&table(&[]));
        let entry = |p: &str| Entry {
            path: p.into(),
            kind: crate::store::EntryKind::File,
            remote_id: format!("id-{p}"),
            size: 1,
            mtime_ns: 1,
            inode: 1,
            sha256: None,
            remote_version: None,
            ctime_ns: None,
        };
        let known: BTreeMap<String, Entry> = ["a.txt", "nas", "nas/b.txt", "nasty.txt"]
            .iter()
            .map(|p| (p.to_string(), entry(p)))
            .collect();
        let item = |p: &str| DiskItem {
            path: p.into(),
            kind: crate::store::EntryKind::File,
            size: 1,
            mtime_ns: 1,
            inode: 1,
            ctime_ns: 1,
        };
        let mut disk: BTreeMap<String, DiskItem> = ["a.txt", "nas", "nas/new.txt"]
            .iter()
            .map(|p| (p.to_string(), item(p)))
            .collect();
        let mut renames = vec![
            ("a.txt".to_string(), "nas/a.txt".to_string()),
            ("x".to_string(), "y".to_string()),
        ];
        let kept = m.hide(Arc::new(known), &mut disk, &mut renames);
        assert_eq!(
            kept.keys().collect::<Vec<_>>(),
            vec!["a.txt", "nasty.txt"],
            "the gone mount point and its subtree are not compared"
        );
        assert_eq!(disk.keys().collect::<Vec<_>>(), vec!["a.txt"]);
        assert_eq!(renames, vec![("x".to_string(), "y".to_string())]);
    }

    #[test]
    fn mount_points_are_taken_relative_to_the_root_without_the_root_itself() {
        let info = "\
36 25 0:32 / /srv/data rw - ext4 /dev/sdb1 rw
37 36 0:33 / /srv/data/nas rw - nfs4 nas:/x rw
38 36 0:34 / /srv/data2 rw - ext4 /dev/sdc1 rw
39 37 0:35 / /srv/data/nas/deep\\040dir rw - fuse.sshfs a@b:/ rw
";
        let got = mounts_below(info, Path::new("/srv/data"));
        assert_eq!(
            got,
            table(&[("nas", "nfs4"), ("nas/deep dir", "fuse.sshfs")])
        );
    }
}
