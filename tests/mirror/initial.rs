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
