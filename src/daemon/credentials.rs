//! Where the daemon's tokens come from and where rotated ones go.
//!
//! The access token comes from `$CREDENTIALS_DIRECTORY/token`, `remote.token_file` or
//! `SCAIDRIVE_TOKEN`; an optional refresh token from `remote.refresh_token_file` or
//! `SCAIDRIVE_REFRESH_TOKEN`. Refresh tokens are single-use, so after a refresh the
//! configured one is spent: the new pair is written atomically (temp file + rename, mode
//! 0600) to `<state_dir>/credentials.json` and used on the next start, as long as the
//! configured refresh token and access token are still the ones the pair descends from.
//! A newly provisioned token (access or refresh) therefore always wins over a stale
//! rotated pair — at start and when a HUP reloads the credentials.
//!
//! DESIGN.md §3 puts rotated tokens in the state database; they live in this private
//! file instead, so the database never holds a secret (the project rule) and can be
//! copied for diagnosis without leaking credentials.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::DaemonError;
use crate::config::{self, Config, Env};
use crate::remote::{PersistFuture, Secret, TokenPair, TokenSink};

#[derive(Serialize, Deserialize)]
struct Stored {
    access_token: String,
    refresh_token: Option<String>,
    /// SHA-256 of the configured refresh token this pair descends from.
    derived_from: Option<String>,
    /// SHA-256 of the configured access token at the time (absent in older files).
    #[serde(default)]
    access_from: Option<String>,
}

/// Which configured tokens a pair descends from (SHA-256 fingerprints, never the tokens).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    access: Option<String>,
    refresh: Option<String>,
}

fn fingerprint(token: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn path_in(state_dir: &Path) -> PathBuf {
    state_dir.join("credentials.json")
}

/// The token pair to start with, and where it comes from (which the sink needs to mark
/// the pairs it stores).
pub fn load(cfg: &Config, env: &Env, state_dir: &Path) -> Result<(TokenPair, Origin), DaemonError> {
    let access = config::load_token(cfg, env)?.ok_or_else(|| {
        DaemonError::Credentials(
            "no access token: set SCAIDRIVE_TOKEN, remote.token_file, or systemd LoadCredential=token:…".into(),
        )
    })?;
    let refresh = match &cfg.remote.refresh_token_file {
        Some(p) => Some(config::read_secret_file(p, true)?),
        None => env
            .get("SCAIDRIVE_REFRESH_TOKEN")
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty()),
    };
    check_stored_private(&path_in(state_dir))?;
    let origin = Origin {
        access: Some(fingerprint(&access)),
        refresh: refresh.as_deref().map(fingerprint),
    };
    if origin.refresh.is_some()
        && let Ok(text) = std::fs::read_to_string(path_in(state_dir))
        && let Ok(stored) = serde_json::from_str::<Stored>(&text)
        && stored.derived_from == origin.refresh
        && (stored.access_from.is_none() || stored.access_from == origin.access)
    {
        let pair = TokenPair {
            access_token: Secret::new(stored.access_token),
            refresh_token: stored.refresh_token.map(Secret::new),
            expires_in: None,
        };
        return Ok((pair, origin));
    }
    let pair = TokenPair {
        access_token: Secret::new(access),
        refresh_token: refresh.map(Secret::new),
        expires_in: None,
    };
    Ok((pair, origin))
}

/// The rotated pair is written 0600; a copy that others can read has leaked (or is about
/// to), so the daemon refuses to start until the owner fixes the mode.
fn check_stored_private(p: &Path) -> Result<(), DaemonError> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(p) else {
        return Ok(()); // nothing rotated yet
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(DaemonError::Credentials(format!(
            "stored credentials file {} is readable by group or others (mode {mode:o}); run: chmod 600 {}",
            p.display(),
            p.display()
        )));
    }
    Ok(())
}

/// Persists refreshed pairs to `<state_dir>/credentials.json`.
pub struct FileTokenSink {
    path: PathBuf,
    origin: std::sync::RwLock<Origin>,
}

impl FileTokenSink {
    pub fn new(state_dir: &Path, origin: &Origin) -> FileTokenSink {
        FileTokenSink {
            path: path_in(state_dir),
            origin: std::sync::RwLock::new(origin.clone()),
        }
    }

    /// After a reload put newly provisioned tokens in place: pairs rotated from now on
    /// descend from them.
    pub fn set_origin(&self, origin: &Origin) {
        *self.origin.write().unwrap_or_else(|e| e.into_inner()) = origin.clone();
    }

    fn write(&self, pair: &TokenPair) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let origin = self
            .origin
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let stored = Stored {
            access_token: pair.access_token.expose().to_string(),
            refresh_token: pair.refresh_token.as_ref().map(|s| s.expose().to_string()),
            derived_from: origin.refresh,
            access_from: origin.access,
        };
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(
            serde_json::to_string(&stored)
                .map_err(std::io::Error::other)?
                .as_bytes(),
        )?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

impl TokenSink for FileTokenSink {
    fn persist<'a>(&'a self, pair: &'a TokenPair) -> PersistFuture<'a> {
        let result = self
            .write(pair)
            .map_err(|e| format!("saving rotated tokens to {}: {e}", self.path.display()));
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_pair_is_used_until_a_new_token_is_provisioned() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = Env::new();
        env.insert("SCAIDRIVE_TOKEN".into(), "access-1".into());
        env.insert("SCAIDRIVE_REFRESH_TOKEN".into(), "refresh-1".into());
        let cfg = Config::default();
        let (first, origin) = load(&cfg, &env, dir.path()).unwrap();
        assert_eq!(first.refresh_token.as_ref().unwrap().expose(), "refresh-1");

        FileTokenSink::new(dir.path(), &origin)
            .write(&TokenPair::with_refresh("access-2", "refresh-2"))
            .unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("credentials.json"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let (again, _) = load(&cfg, &env, dir.path()).unwrap();
        assert_eq!(again.access_token.expose(), "access-2");
        assert_eq!(again.refresh_token.as_ref().unwrap().expose(), "refresh-2");

        // A newly provisioned access token wins over the pair rotated from the old one.
        env.insert("SCAIDRIVE_TOKEN".into(), "access-new".into());
        let (fresh, _) = load(&cfg, &env, dir.path()).unwrap();
        assert_eq!(fresh.access_token.expose(), "access-new");
        assert_eq!(fresh.refresh_token.as_ref().unwrap().expose(), "refresh-1");
        env.insert("SCAIDRIVE_TOKEN".into(), "access-1".into());

        env.insert("SCAIDRIVE_REFRESH_TOKEN".into(), "refresh-new".into());
        let (fresh, _) = load(&cfg, &env, dir.path()).unwrap();
        assert_eq!(
            fresh.refresh_token.as_ref().unwrap().expose(),
            "refresh-new"
        );
        assert_eq!(
            format!("{fresh:?}").matches("***").count(),
            2,
            "Debug hides both tokens"
        );
    }

    #[test]
    fn missing_token_is_a_credentials_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = load(&Config::default(), &Env::new(), dir.path()).unwrap_err();
        assert_eq!(e.exit_code(), super::super::EXIT_CONFIG);
        assert!(e.to_string().contains("SCAIDRIVE_TOKEN"));
    }
}
