//! `scaidrived --demo [DIR]`: the quick start. Starts the bundled devserver on loopback
//! (data under the demo's state directory), mirrors DIR (a small sample folder when none
//! is given) into a folder of the same name in the server's share, prints a
//! password-protected DOWNLOAD link for it once the first pass is done, and keeps
//! mirroring until Ctrl-C. No account and no configuration needed.

use std::path::{Path, PathBuf};

use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Env, MirrorConfig, RemoteSection};
use crate::daemon::{self, DaemonError, RunOptions};
use crate::devserver::{self, DevServerConfig};
use crate::mirror::MirrorState;
use crate::remote::{Client, ClientConfig, ItemKind, LinkOptions, NewLink, TokenPair};

fn random(len: usize) -> String {
    const A: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| A[rng.random_range(0..A.len())] as char)
        .collect()
}

fn write_sample(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join("photos/2026"))?;
    std::fs::create_dir_all(dir.join("docs"))?;
    std::fs::write(
        dir.join("README.txt"),
        "This folder is mirrored by scaidrived --demo.\nEdit, add or delete files here and watch them reach the server.\n",
    )?;
    std::fs::write(
        dir.join("docs/notes.md"),
        "# Notes\n\n- local is the source of truth\n- renames are moves, not re-uploads\n",
    )?;
    let mut rng = rand::rng();
    for i in 1..=3 {
        let bytes: Vec<u8> = (0..20_000).map(|_| rng.random()).collect();
        std::fs::write(dir.join(format!("photos/2026/img_{i:03}.raw")), bytes)?;
    }
    Ok(())
}

/// Runs the demo until Ctrl-C.
pub async fn run(
    dir: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    env: &Env,
) -> Result<(), DaemonError> {
    let base = match state_dir {
        Some(d) => d,
        None => Config::default().state_dir(env)?.join("demo"),
    };
    let other =
        |e: std::io::Error, what: &Path| DaemonError::Other(format!("{}: {e}", what.display()));
    let root = match dir {
        Some(d) => {
            if !d.is_dir() {
                return Err(DaemonError::Config(crate::config::ConfigError::Check(
                    format!("--demo {}: not a directory", d.display()),
                )));
            }
            d
        }
        None => {
            let sample = base.join("sample");
            if !sample.exists() {
                write_sample(&sample).map_err(|e| other(e, &sample))?;
            }
            sample
        }
    };
    let root = std::fs::canonicalize(&root).map_err(|e| other(e, &root))?;
    let folder_name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "mirror".into());

    // Refuse early (before starting a server) if a demo already runs on this state.
    std::fs::create_dir_all(base.join("state")).map_err(|e| other(e, &base))?;
    drop(crate::daemon::InstanceLock::acquire(&base.join("state"))?);

    let token = format!("demo-{}", random(24));
    let mut sc = DevServerConfig::for_tests(base.join("devserver"));
    sc.tokens = vec![token.clone()];
    sc.share_name = "Demo".into();
    let server = devserver::start(sc)
        .await
        .map_err(|e| DaemonError::Other(format!("local server: {e}")))?;
    crate::say!(
        "Local ScaiDrive server: {} (share {})",
        server.url(),
        server.share_id()
    );
    crate::say!("Mirroring {} → /{folder_name} …", root.display());
    crate::say!(
        "Control it with:  scaidrivectl --socket {} status",
        base.join("run").join("scaidrived.sock").display()
    );

    let mut config = Config {
        remote: RemoteSection {
            url: Some(server.url().to_string()),
            ..RemoteSection::default()
        },
        ..Config::default()
    };
    config.daemon.state_dir = Some(base.join("state"));
    config.daemon.runtime_dir = Some(base.join("run"));
    config.mirrors.push(MirrorConfig {
        name: Some("demo".into()),
        path: root.clone(),
        share_id: server.share_id().to_string(),
        remote_path: folder_name.clone(),
        exclude: Vec::new(),
        delete: crate::config::DeleteMode::Trash,
        quiet_period_ms: 1000,
        max_delay_secs: 30,
        rescan_interval_secs: 3600,
        watch: crate::config::WatchMode::Auto,
        poll_interval_secs: 60,
        unload_idle_secs: 30,
        unload_min_entries: 200_000,
        mass_delete_count: 500,
        mass_delete_percent: 25,
        link: None,
        remote_poll_secs: 30,
        remote_extras: crate::config::RemoteExtras::Keep,
    });
    let mut denv = env.clone();
    denv.insert("SCAIDRIVE_TOKEN".into(), token.clone());
    denv.remove("SCAIDRIVE_REFRESH_TOKEN");
    denv.remove("CREDENTIALS_DIRECTORY");

    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    #[cfg(unix)]
    {
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Ok(mut t) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                t.recv().await;
                stop.cancel();
            }
        });
    }
    let (url, share_id) = (server.url().to_string(), server.share_id().to_string());
    let on_started = move |handles: &[crate::mirror::MirrorHandle]| {
        let Some(h) = handles.first().cloned() else {
            return;
        };
        tokio::spawn(async move {
            let s = h.wait_settled().await;
            if s.state != MirrorState::Idle {
                crate::say!(
                    "The first pass did not finish: {} ({})",
                    s.state,
                    s.reason.unwrap_or_default()
                );
                return;
            }
            match share_link(&url, &token, &share_id, &folder_name).await {
                Ok((link, password)) => {
                    crate::say!(
                        "First pass done: {} files, {} bytes uploaded.",
                        s.files_done,
                        s.bytes_done
                    );
                    crate::say!();
                    crate::say!("Share link: {link}");
                    crate::say!("Password:   {password}");
                    crate::say!();
                    crate::say!("Open it with:  curl -H 'X-Link-Password: {password}' {link}");
                    crate::say!("Changes in {} keep being mirrored; Ctrl-C stops.", s.root);
                }
                Err(e) => crate::say!("Could not create the share link: {e}"),
            }
        });
    };
    let opts = RunOptions {
        on_started: Some(Box::new(on_started)),
        ..RunOptions::default()
    };
    let result = daemon::run(config, &denv, opts, shutdown).await;
    server.shutdown().await;
    result.map(|_| ())
}

/// Creates a password-protected DOWNLOAD link for the mirrored folder.
async fn share_link(
    url: &str,
    token: &str,
    share_id: &str,
    folder: &str,
) -> Result<(String, String), String> {
    let client =
        Client::new(ClientConfig::new(url, TokenPair::bearer(token))).map_err(|e| e.to_string())?;
    let root = client
        .children(share_id, None)
        .await
        .map_err(|e| e.to_string())?;
    let id = root
        .find(folder, ItemKind::Folder)
        .map(|i| i.id.clone())
        .ok_or("the mirrored folder is not on the server")?;
    let password = random(12);
    let link = NewLink {
        resource_type: "folder".into(),
        resource_id: id,
        share_id: share_id.into(),
        link_type: "DOWNLOAD".into(),
        options: LinkOptions {
            password: Some(password.clone().into()),
            expires_in_days: Some(14),
            custom_name: Some("scaidrive demo".into()),
            ..LinkOptions::default()
        },
    };
    let created = client.create_link(&link).await.map_err(|e| e.to_string())?;
    Ok((
        created.url.ok_or("the server returned no link url")?,
        password,
    ))
}
