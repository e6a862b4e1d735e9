//! First pass and restart costs.

use crate::world::World;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_pass_mirrors_a_nested_tree_with_one_request_per_item() {
    let w = World::new().await;
    let mut files = 0;
    let mut dirs = std::collections::BTreeSet::new();
    for d in 0..20 {
        for s in 0..3 {
            for f in 0..25 {
                let rel = format!("d{d:02}/s{s}/f{f:03}.txt");
                w.write(&rel, format!("content of {rel}").as_bytes());
                files += 1;
            }
            dirs.insert(format!("d{d:02}/s{s}"));
        }
        dirs.insert(format!("d{d:02}"));
    }
    w.write("empty.txt", b"");
    w.write("ignored.skipme", b"not mirrored");
    w.write("notes.swp", b"editor swap file");
    std::fs::create_dir_all(w.root.join("empty-dir/inner")).unwrap();
    files += 1;
    dirs.insert("empty-dir".into());
    dirs.insert("empty-dir/inner".into());

    let d = w.start().await;
    let s = d.settled().await;
    assert!(s.in_sync(), "{s:?}");
    // Counted before the test walks the remote tree itself.
    let stats = w.stats().await;
    let count = |route: &str| stats["by_route"][route].as_u64().unwrap_or(0);
    assert_eq!(
        count("POST /api/v1/files"),
        files,
        "one upload request per file: {stats}"
    );
    assert_eq!(
        count("POST /api/v1/folders") as usize,
        dirs.len() + 2,
        "one create per folder plus the two base folders"
    );
    assert_eq!(
        stats["requests_total"].as_u64().unwrap(),
        files + dirs.len() as u64 + 2,
        "nothing else: {stats}"
    );
    w.assert_mirrored().await;
    let report = d.stop().await;
    assert!(report.all_in_sync());

    // A restart with nothing changed costs no upload and no listing.
    w.reset_stats().await;
    let d = w.start().await;
    d.settled().await;
    let stats = w.stats().await;
    assert_eq!(
        stats["requests_total"], 0,
        "restart with nothing changed made requests: {stats}"
    );
    d.stop().await;
}

/// A pass bigger than one chunk of ops runs chunk after chunk, applying each before the
/// next (so it never holds all results at once): every file is still uploaded once, the
/// files of later chunks find their folders created by an earlier one, the mirror is not
/// shown idle between chunks, and the progress counts the later chunks' files too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_larger_than_a_chunk_runs_in_chunks_with_one_request_per_item() {
    let w = World::new().await;
    let (dirs, per_dir) = (20usize, 400usize);
    let files = dirs * per_dir;
    assert!(
        files + dirs > 2 * scaidrive::mirror::CHUNK_OPS - 1000,
        "the pass spans chunks"
    );
    for d in 0..dirs {
        for f in 0..per_dir {
            w.write(
                &format!("d{d:02}/f{f:03}.txt"),
                format!("{d}/{f}").as_bytes(),
            );
        }
    }
    let d = w.start().await;
    // Every status change, from the start, until the pass is done.
    let mut rx = d.handle.status.clone();
    let seen = tokio::spawn(async move {
        let mut samples = Vec::new();
        loop {
            let s = rx.borrow_and_update().clone();
            let done = s.in_sync();
            samples.push(s);
            if done || rx.changed().await.is_err() {
                return samples;
            }
        }
    });
    let s = d.settled().await;
    assert!(s.in_sync(), "{s:?}");
    let samples = tokio::time::timeout(std::time::Duration::from_secs(10), seen)
        .await
        .expect("status watcher ends at in sync")
        .unwrap();
    let stats = w.stats().await;
    let count = |route: &str| stats["by_route"][route].as_u64().unwrap_or(0);
    assert_eq!(count("POST /api/v1/files") as usize, files, "{stats}");
    assert_eq!(count("POST /api/v1/folders") as usize, dirs + 2, "{stats}");
    assert_eq!(
        stats["requests_total"].as_u64().unwrap() as usize,
        files + dirs + 2,
        "nothing else: {stats}"
    );
    w.assert_mirrored().await;
    w.assert_unique_names().await;
    let early_idle: Vec<_> = samples
        .iter()
        .filter(|s| {
            s.state == scaidrive::mirror::MirrorState::Idle && (s.files_done as usize) < files
        })
        .collect();
    assert!(
        early_idle.is_empty(),
        "idle between chunks: {:?}",
        early_idle.first()
    );
    let most = samples.iter().map(|s| s.files_remaining).max().unwrap_or(0) as usize;
    assert!(
        most > scaidrive::mirror::CHUNK_OPS,
        "progress counted only the running chunk (at most {most} files remaining shown)"
    );
    d.stop().await;
}
