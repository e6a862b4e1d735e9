//! Hash once (issue 16, item 4): a file the planner hashed is not read again by the
//! uploader before it is sent, and a file that changed after it was planned is not sent
//! with the stale hash.
//!
//! Runs the real planner and uploader against an in-process devserver and reads
//! `scaidrive::hash::bytes_hashed`, the process-wide count of bytes hashed. It is its own
//! test binary so that no other test hashes in the same process while it counts.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use scaidrive::config::DeleteMode;
use scaidrive::hash::bytes_hashed;
use scaidrive::plan::{self, DiskItem, Op};
use scaidrive::remote::{Client, ClientConfig, TokenPair};
use scaidrive::store::{Entry, EntryKind, Store};
use scaidrive::upload::{Counters, MirrorTarget, Outcome, Uploader};
use tokio_util::sync::CancellationToken;

#[path = "../support/mod.rs"]
mod support;

/// Below the session threshold set in `client` (multipart for a new file) and above it
/// (a resumable session); a replace is always a session.
const FILES: [(&str, usize); 2] = [("small.bin", 200 * 1024), ("big.bin", 3 * 1024 * 1024)];

fn content(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn disk_item(root: &Path, path: &str) -> DiskItem {
    let md = std::fs::symlink_metadata(root.join(path)).expect("stat");
    DiskItem {
        path: path.to_string(),
        kind: EntryKind::File,
        size: md.len(),
        mtime_ns: scaidrive::watch::mtime_ns(&md),
        inode: md.ino(),
        ctime_ns: scaidrive::watch::ctime_ns(&md),
    }
}

struct Rig {
    root: std::path::PathBuf,
    store: Store,
    client: Client,
    uploader: Uploader,
    target: Arc<MirrorTarget>,
    counters: Arc<Counters>,
}

impl Rig {
    async fn known(&self) -> BTreeMap<String, Entry> {
        let entries = self
            .store
            .entries(self.target.mirror)
            .await
            .expect("entries");
        entries.into_iter().map(|e| (e.path.clone(), e)).collect()
    }

    /// Plans the files of `FILES` as they are on disk, hashing through the real hasher.
    async fn plan(&self) -> Vec<Op> {
        let disk: BTreeMap<String, DiskItem> = FILES
            .iter()
            .map(|(p, _)| (p.to_string(), disk_item(&self.root, p)))
            .collect();
        let root = self.root.clone();
        let planned = plan::plan(&self.known().await, &disk, &[], &mut |rel| {
            plan::hash_file(&root.join(rel))
        });
        assert!(planned.failures.is_empty(), "{:?}", planned.failures);
        planned.ops
    }

    async fn run(&self, ops: Vec<Op>) -> Vec<(String, Outcome)> {
        let known = self.known().await;
        let results = self
            .uploader
            .run_batch(
                &self.target,
                &self.counters,
                &known,
                ops,
                &CancellationToken::new(),
            )
            .await;
        results
            .into_iter()
            .map(|r| (r.op.path().to_string(), r.outcome))
            .collect()
    }

    async fn remote_content(&self, path: &str) -> Vec<u8> {
        let id = self.known().await[path].remote_id.clone();
        let dest = self.root.parent().unwrap().join("download");
        self.client.download_to(&id, &dest).await.expect("download");
        std::fs::read(&dest).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_hash_is_not_computed_again_by_the_uploader() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::Server::start(dir.path().join("data")).await;
    let mut cfg = ClientConfig::new(&server.url, TokenPair::bearer(server.token.as_str()));
    cfg.upload.session_threshold = 1024 * 1024;
    cfg.upload.chunk_size = 1024 * 1024;
    let client = Client::new(cfg).expect("client");
    let store = Store::open(&dir.path().join("state.db")).expect("store");
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let mirror = store
        .ensure_mirror("m", root.to_str().unwrap(), &server.share, "")
        .await
        .expect("mirror");
    let rig = Rig {
        root: root.clone(),
        store: store.clone(),
        client: client.clone(),
        uploader: Uploader::new(client, store, 4),
        target: Arc::new(MirrorTarget {
            mirror: mirror.id,
            name: "m".into(),
            root: root.clone(),
            share_id: server.share.clone(),
            base_folder_id: None,
            delete_mode: DeleteMode::Trash,
            remote_extras: Default::default(),
        }),
        counters: Arc::new(Counters::default()),
    };
    let total: u64 = FILES.iter().map(|(_, n)| *n as u64).sum();

    // New files: the planner does not read them, so the uploader hashes each once.
    for (p, n) in FILES {
        std::fs::write(root.join(p), content(1, n)).unwrap();
    }
    let before = bytes_hashed();
    let ops = rig.plan().await;
    assert_eq!(bytes_hashed() - before, 0, "the planner reads no new file");
    assert!(
        ops.iter()
            .all(|op| matches!(op, Op::Upload { sha256: None, .. })),
        "{ops:?}"
    );
    let before = bytes_hashed();
    for (path, outcome) in rig.run(ops).await {
        assert!(matches!(outcome, Outcome::Done(_)), "{path}: {outcome:?}");
    }
    assert_eq!(
        bytes_hashed() - before,
        total,
        "the uploader hashes new files"
    );

    // Edited files: the planner hashes them to see that they changed, and that hash is
    // the one the uploader sends.
    for (p, n) in FILES {
        std::fs::write(root.join(p), content(2, n)).unwrap();
    }
    let before = bytes_hashed();
    let ops = rig.plan().await;
    assert_eq!(
        bytes_hashed() - before,
        total,
        "the planner hashes each edit once"
    );
    assert!(
        ops.iter().all(|op| matches!(op, Op::Replace { .. })),
        "{ops:?}"
    );
    let before = bytes_hashed();
    for (path, outcome) in rig.run(ops).await {
        assert!(matches!(outcome, Outcome::Done(_)), "{path}: {outcome:?}");
    }
    assert_eq!(
        bytes_hashed() - before,
        0,
        "the uploader must not hash a file the planner hashed"
    );
    for (p, n) in FILES {
        assert!(
            rig.remote_content(p).await == content(2, n),
            "{p}: the remote holds the edit"
        );
    }

    // Edited again after it was planned: the planned hash is stale, so the file is not
    // sent with it; the op reports the change and the store keeps the last synced state.
    for (p, n) in FILES {
        std::fs::write(root.join(p), content(3, n)).unwrap();
    }
    let ops = rig.plan().await;
    let synced = rig.known().await;
    for (p, n) in FILES {
        std::fs::write(root.join(p), content(4, n + 1)).unwrap();
    }
    for (path, outcome) in rig.run(ops).await {
        assert!(
            matches!(outcome, Outcome::Changed(ref e) if e.is_empty()),
            "{path}: {outcome:?}"
        );
    }
    assert_eq!(rig.known().await, synced, "nothing recorded as synced");
    for (p, n) in FILES {
        assert!(
            rig.remote_content(p).await == content(2, n),
            "{p}: the remote still holds the last synced version"
        );
    }
    drop(server);
}
