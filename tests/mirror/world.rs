//! Test world for the mirror engine: a devserver on 127.0.0.1:0, a local root and a
//! state directory in one temp dir, the real daemon run in-process (or as a child process
//! for kill -9 tests), and helpers that walk the remote tree and compare it with the
//! disk byte for byte (SHA-256). A failing comparison prints both trees. The devserver,
//! the daemon binary and the polling helpers come from the shared `support` module.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Method;
use scaidrive::config::{Config, Env, MirrorConfig, RemoteSection};
use scaidrive::daemon::{self, RunOptions};
use scaidrive::mirror::{MirrorHandle, MirrorStatus};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

pub use crate::support::TOKEN;
use crate::support::{ConfigFile, MirrorSection, Server, write_file};

/// Remote base folder of the mirror (created by the daemon).
pub const BASE: &str = "backup/m";

/// Derefs to its [`Server`], so `w.url`, `w.share`, `w.http`, `w.stats()`, `w.faults(...)`
/// and the other devserver helpers read as the world's own.
pub struct World {
    pub dir: tempfile::TempDir,
    pub server: Server,
    pub root: PathBuf,
}

impl std::ops::Deref for World {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

pub struct Daemon {
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<daemon::RunReport, daemon::DaemonError>>,
    pub handle: MirrorHandle,
}

impl Daemon {
    pub async fn stop(self) -> daemon::RunReport {
        self.stop.cancel();
        self.task.await.expect("daemon task").expect("daemon ran")
    }

    /// Waits until the mirror is in sync (or paused/failed) and returns its status.
    pub async fn settled(&self) -> MirrorStatus {
        tokio::time::timeout(Duration::from_secs(120), async {
            // Give the watcher a moment to deliver events for changes just made.
            tokio::time::sleep(Duration::from_millis(100)).await;
            self.handle.wait_settled().await
        })
        .await
        .unwrap_or_else(|_| panic!("mirror did not settle: {:?}", self.handle.status()))
    }

    /// Waits until the status satisfies `f`.
    pub async fn until(&self, what: &str, f: impl Fn(&MirrorStatus) -> bool) -> MirrorStatus {
        let mut rx = self.handle.status.clone();
        tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                {
                    let s = rx.borrow_and_update();
                    if f(&s) {
                        return s.clone();
                    }
                }
                if rx.changed().await.is_err() {
                    return self.handle.status();
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}: {:?}", self.handle.status()))
    }
}

impl World {
    pub async fn new() -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Server::start(dir.path().join("server")).await;
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        World { server, root, dir }
    }

    /// The daemon binary's config for this world: one mirror `m` of the root into
    /// [`BASE`]; callers add what their test needs before writing it.
    pub fn config_file(&self) -> ConfigFile<'_> {
        let mut m = MirrorSection::new("m", &self.root, &self.share);
        m.remote_path = Some(BASE);
        ConfigFile::new(self.dir.path(), &self.url).mirror(m)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn mirror_config(&self) -> MirrorConfig {
        MirrorConfig {
            name: Some("m".into()),
            path: self.root.clone(),
            share_id: self.share.clone(),
            remote_path: BASE.into(),
            exclude: vec!["*.skipme".into()],
            delete: scaidrive::config::DeleteMode::Trash,
            quiet_period_ms: 200,
            max_delay_secs: 5,
            rescan_interval_secs: 3600,
            watch: scaidrive::config::WatchMode::Auto,
            poll_interval_secs: 60,
            unload_idle_secs: 30,
            unload_min_entries: 200_000,
            mass_delete_count: 50,
            mass_delete_percent: 50,
            link: None,
            // Off unless a test follows the change log: the request counts other tests
            // assert are those of the mirror alone.
            remote_poll_secs: 0,
            remote_extras: scaidrive::config::RemoteExtras::Keep,
        }
    }

    pub fn config_with(&self, m: MirrorConfig) -> Config {
        let mut c = Config {
            remote: RemoteSection {
                url: Some(self.url.clone()),
                ..RemoteSection::default()
            },
            ..Config::default()
        };
        c.daemon.state_dir = Some(self.state_dir());
        c.daemon.runtime_dir = Some(self.dir.path().join("run"));
        c.remote.large_file_threshold = 1024 * 1024;
        c.remote.chunk_size = Some(256 * 1024);
        c.mirrors.push(m);
        c
    }

    pub fn env(&self) -> Env {
        let mut e = Env::new();
        e.insert("SCAIDRIVE_TOKEN".into(), TOKEN.into());
        e
    }

    pub async fn start(&self) -> Daemon {
        self.start_with(self.mirror_config()).await
    }

    pub async fn start_with(&self, m: MirrorConfig) -> Daemon {
        self.start_config(self.config_with(m), RunOptions::default())
            .await
    }

    pub fn write(&self, rel: &str, data: &[u8]) {
        write_file(&self.root, rel, data);
    }

    /// Trashes a remote item as another client would (`kind`: `files` or `folders`).
    pub async fn trash(&self, kind: &str, id: &str) {
        let r = self
            .http
            .delete(format!("{}/api/v1/{kind}/{id}", self.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "trash {kind}/{id}: {}", r.status());
    }

    /// The remote tree under the base folder: relative path → Some(sha256) for files,
    /// None for folders. Items deleted while it walks count as gone.
    pub async fn remote_tree(&self) -> BTreeMap<String, Option<String>> {
        let mut out = BTreeMap::new();
        let Some(folder) = self.remote_base_id().await else {
            return out;
        };
        let mut stack = vec![(folder, String::new())];
        while let Some((id, prefix)) = stack.pop() {
            let Some(list) = self
                .api_live(&format!("/folders/{id}/children?share_id={}", self.share))
                .await
            else {
                out.retain(|p, _| p != &prefix && !p.starts_with(&format!("{prefix}/")));
                continue;
            };
            for item in list["items"].as_array().unwrap() {
                let name = item["name"].as_str().unwrap();
                let path = if prefix.is_empty() {
                    name.to_string()
                } else {
                    format!("{prefix}/{name}")
                };
                let iid = item["id"].as_str().unwrap().to_string();
                if item["type"] == "folder" {
                    out.insert(path.clone(), None);
                    stack.push((iid, path));
                } else {
                    if let Some(meta) = self.api_live(&format!("/files/{iid}")).await {
                        out.insert(path, meta["checksum_sha256"].as_str().map(str::to_string));
                    }
                }
            }
        }
        out
    }

    /// Remote ids under the base folder: relative path → id (files and folders).
    pub async fn remote_ids(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(base) = self.remote_base_id().await else {
            return out;
        };
        let mut stack = vec![(base, String::new())];
        while let Some((id, prefix)) = stack.pop() {
            let list = self
                .api(&format!("/folders/{id}/children?share_id={}", self.share))
                .await;
            for item in list["items"].as_array().unwrap() {
                let name = item["name"].as_str().unwrap();
                let path = if prefix.is_empty() {
                    name.to_string()
                } else {
                    format!("{prefix}/{name}")
                };
                let iid = item["id"].as_str().unwrap().to_string();
                if item["type"] == "folder" {
                    stack.push((iid.clone(), path.clone()));
                }
                out.insert(path, iid);
            }
        }
        out
    }

    /// The id of the remote base folder, if it exists.
    pub async fn remote_base_id(&self) -> Option<String> {
        self.server.folder_id(BASE).await
    }

    /// The local tree as it should appear remotely (ignored names excluded).
    pub fn local_tree(&self) -> BTreeMap<String, Option<String>> {
        fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Option<String>>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let e = e.unwrap();
                let ft = e.file_type().unwrap();
                let rel = e
                    .path()
                    .strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let name = e.file_name().to_string_lossy().into_owned();
                if ft.is_symlink()
                    || name.ends_with(".skipme")
                    || name.ends_with(".swp")
                    || name.ends_with('~')
                {
                    continue;
                }
                if ft.is_dir() {
                    out.insert(rel, None);
                    walk(base, &e.path(), out);
                } else if ft.is_file() {
                    let data = std::fs::read(e.path()).unwrap();
                    out.insert(rel, Some(hex::encode(Sha256::digest(&data))));
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.root, &self.root, &mut out);
        out
    }

    /// Asserts the remote tree equals the local tree, printing both on failure.
    pub async fn assert_mirrored(&self) {
        let remote = self.remote_tree().await;
        let local = self.local_tree();
        if remote != local {
            let only_local: Vec<_> = local
                .iter()
                .filter(|(k, v)| remote.get(*k) != Some(v))
                .map(|(k, _)| k)
                .collect();
            let only_remote: Vec<_> = remote
                .iter()
                .filter(|(k, v)| local.get(*k) != Some(v))
                .map(|(k, _)| k)
                .collect();
            panic!(
                "remote tree differs from local\n  missing or different remotely: {only_local:?}\n  extra or different remotely: {only_remote:?}\n  ({} local, {} remote)",
                local.len(),
                remote.len()
            );
        }
    }

    /// Versions of the remote file at `rel`.
    pub async fn versions(&self, rel: &str) -> Vec<Value> {
        let id = self
            .remote_id(rel)
            .await
            .unwrap_or_else(|| panic!("{rel} not on the remote"));
        self.api(&format!("/files/{id}/versions")).await["versions"]
            .as_array()
            .unwrap()
            .clone()
    }

    pub async fn remote_id(&self, rel: &str) -> Option<String> {
        let mut folder = "root".to_string();
        let full = format!("{BASE}/{rel}");
        let segs: Vec<&str> = full.split('/').collect();
        for (i, seg) in segs.iter().enumerate() {
            let list = self
                .api(&format!(
                    "/folders/{folder}/children?share_id={}",
                    self.share
                ))
                .await;
            let item = list["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|it| it["name"] == *seg)?
                .clone();
            if i + 1 == segs.len() {
                return item["id"].as_str().map(str::to_string);
            }
            folder = item["id"].as_str().unwrap().to_string();
        }
        None
    }

    /// Items in the remote trash under the base folder's direct children.
    pub async fn trashed(&self) -> Vec<String> {
        let base = self.remote_base_id().await.expect("base folder exists");
        let list = self
            .api(&format!(
                "/folders/{base}/children?share_id={}&include_deleted=true",
                self.share
            ))
            .await;
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["is_deleted"] == json!(true))
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect()
    }
}

#[allow(dead_code)] // each helper is used by some of the test modules
impl World {
    /// Lists every live remote folder of the share (from its root) and panics, naming the
    /// folder and the name, if any name occurs twice in one folder (a duplicate upload or
    /// folder create).
    pub async fn assert_unique_names(&self) {
        let mut stack = vec![("root".to_string(), "/".to_string())];
        while let Some((id, path)) = stack.pop() {
            let list = self
                .api(&format!("/folders/{id}/children?share_id={}", self.share))
                .await;
            let mut seen = std::collections::BTreeSet::new();
            for item in list["items"].as_array().unwrap() {
                let name = item["name"].as_str().unwrap().to_string();
                assert!(
                    seen.insert(name.clone()),
                    "duplicate name {name:?} in remote folder {path}"
                );
                if item["type"] == "folder" {
                    stack.push((
                        item["id"].as_str().unwrap().to_string(),
                        format!("{}{name}/", path),
                    ));
                }
            }
        }
    }

    /// Sets the test share's quota (`None` = unlimited).
    pub async fn set_quota(&self, bytes: Option<u64>) {
        self.admin(
            Method::PATCH,
            &format!("/shares/{}", self.share),
            json!({ "quota_bytes": bytes }),
        )
        .await;
    }

    /// A new token of the default user: (access, refresh if asked).
    pub async fn new_token(
        &self,
        ttl_secs: Option<i64>,
        refresh: bool,
    ) -> (String, Option<String>) {
        let v = self
            .admin(
                Method::POST,
                "/tokens",
                json!({ "ttl_secs": ttl_secs, "refresh": refresh }),
            )
            .await;
        (
            v["access_token"].as_str().unwrap().to_string(),
            v["refresh_token"].as_str().map(str::to_string),
        )
    }

    /// Stops the devserver and starts a new one on the same port and data directory
    /// (faults and settings start from the defaults again).
    pub async fn restart_server(&mut self) {
        self.server.restart_on_same_port().await;
    }

    /// Runs the daemon with an explicit config and options (the mirror handle is taken
    /// from `on_started`, which must be unset).
    pub async fn start_config(&self, config: Config, mut opts: RunOptions) -> Daemon {
        let env = self.env();
        let stop = CancellationToken::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        opts.on_started = Some(Box::new(move |h: &[MirrorHandle]| {
            let _ = tx.send(h[0].clone());
        }));
        let s = stop.clone();
        let task = tokio::spawn(async move { daemon::run(config, &env, opts, s).await });
        let handle = match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(h)) => h,
            _ => {
                let r = task.await;
                panic!("daemon did not start: {r:?}");
            }
        };
        Daemon { stop, task, handle }
    }
}

/// Waits until the mirror is in sync and the remote equals the disk: a polled change is
/// only seen at the next poll, so "in sync" alone can be the state from before it.
pub async fn converge(w: &World, d: &Daemon) {
    let until = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        d.settled().await;
        if w.remote_tree().await == w.local_tree() {
            // One more settle: a change seen at the last moment must be finished too.
            d.settled().await;
            return;
        }
        assert!(
            std::time::Instant::now() < until,
            "the remote did not converge: {:?}",
            d.handle.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
