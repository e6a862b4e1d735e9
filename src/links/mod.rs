//! Sharing links for mirrored paths: the link manager behind `scaidrivectl link`, `links`
//! and `unlink`, and the keeper of a mirror's `[mirror.link]` root link ([`keeper`]).
//!
//! A link points at a remote id (file, folder, or the whole share when a mirror maps to the
//! share root), so the manager first turns a local path into a mirror-relative path and
//! that into the remote id the store recorded when the item was uploaded. Links are
//! remembered in the state database (never their password) so that asking again with the
//! same options returns the same URL while the server says it is active; an expired,
//! revoked or exhausted link is regenerated — the API has no regenerate call, so a new link
//! with the same options is created first and the old one revoked after, which never
//! leaves the path without a working link. Server refusals are turned into one-line errors
//! that say what to do ([`LinkError`]).

pub mod keeper;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::MirrorConfig;
use crate::mirror::{MirrorHandle, MirrorState};
use crate::remote::{self, Client, Link, LinkOptions, NewLink, Secret};
use crate::store::{EntryKind, LinkRecord, MirrorRecord, Store, StoreError, StoredOptions};
use crate::watch::{IgnoreRules, RelPath};

/// How long `scaidrivectl link` waits by default for a path to reach the remote.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{path} is not inside any mirror ({mirrors})")]
    NotInMirror { path: String, mirrors: String },
    #[error(
        "{path} is ignored by the rules of mirror {mirror} (exclude globs, .scaidriveignore or built-in patterns), so it is not on the remote"
    )]
    Ignored { path: String, mirror: String },
    #[error("{0} does not exist")]
    NoSuchPath(String),
    #[error("{path} is not on the remote yet: {why}")]
    NotYetRemote { path: String, why: String },
    #[error(
        "no SHARE permission on share {share}: links need the share's admin or owner role, and the daemon's token has less"
    )]
    NoSharePermission { share: String },
    #[error("external links are disabled by the tenant's sharing policy")]
    SharingDisabled,
    #[error(
        "the tenant's policy requires a password on links: give --password-file, --password-stdin or --generate-password"
    )]
    PasswordRequiredByPolicy,
    #[error("the tenant's policy requires links to expire: give --expires-in-days or --expires-at")]
    ExpiryRequired,
    #[error("the tenant's policy limits how long links may live: {0}")]
    ExpiryTooLong(String),
    #[error(
        "link {id} for {path} is password-protected and has to be regenerated ({why}); the daemon does not keep passwords, so give it again (--password-file or --password-stdin) or use --generate-password"
    )]
    PasswordNeeded {
        id: String,
        path: String,
        why: String,
    },
    #[error("no link {0} is known to this daemon (see `scaidrivectl links`)")]
    UnknownLink(String),
    #[error("{0}")]
    Invalid(String),
    #[error("ScaiDrive refused: {0}")]
    Remote(remote::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl LinkError {
    /// The control API status for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            LinkError::NotInMirror { .. } | LinkError::NoSuchPath(_) => 404,
            LinkError::UnknownLink(_) => 404,
            LinkError::Ignored { .. } | LinkError::Invalid(_) => 400,
            LinkError::NotYetRemote { .. } => 409,
            LinkError::NoSharePermission { .. } | LinkError::SharingDisabled => 403,
            LinkError::PasswordRequiredByPolicy
            | LinkError::ExpiryRequired
            | LinkError::ExpiryTooLong(_)
            | LinkError::PasswordNeeded { .. } => 422,
            LinkError::Remote(e) => {
                if e.is_transient() {
                    503
                } else {
                    502
                }
            }
            LinkError::Store(_) => 500,
        }
    }

    /// A short machine-readable kind for `--json` callers.
    pub fn code(&self) -> &'static str {
        match self {
            LinkError::NotInMirror { .. } => "not_in_mirror",
            LinkError::Ignored { .. } => "ignored",
            LinkError::NoSuchPath(_) => "no_such_path",
            LinkError::NotYetRemote { .. } => "not_yet_remote",
            LinkError::NoSharePermission { .. } => "no_share_permission",
            LinkError::SharingDisabled => "links_disabled",
            LinkError::PasswordRequiredByPolicy => "password_required",
            LinkError::ExpiryRequired => "expiry_required",
            LinkError::ExpiryTooLong(_) => "expiry_too_long",
            LinkError::PasswordNeeded { .. } => "password_needed",
            LinkError::UnknownLink(_) => "unknown_link",
            LinkError::Invalid(_) => "invalid",
            LinkError::Remote(_) => "remote",
            LinkError::Store(_) => "store",
        }
    }

    /// Maps a server refusal on a link call of `share` to what the user can act on.
    fn from_remote(e: remote::Error, share: &str) -> LinkError {
        let status = e.status().map(|s| s.as_u16());
        match (status, e.code()) {
            (Some(403), Some("EXTERNAL_SHARING_DISABLED")) => LinkError::SharingDisabled,
            (Some(403), _) => LinkError::NoSharePermission {
                share: share.to_string(),
            },
            (Some(422), Some("LINK_PASSWORD_REQUIRED")) => LinkError::PasswordRequiredByPolicy,
            (Some(422), Some("LINK_EXPIRY_REQUIRED")) => LinkError::ExpiryRequired,
            (Some(422), Some("LINK_EXPIRY_TOO_LONG")) => {
                LinkError::ExpiryTooLong(e.message().to_string())
            }
            _ => LinkError::Remote(e),
        }
    }
}

fn is_missing(e: &remote::Error) -> bool {
    e.status().is_some_and(|s| matches!(s.as_u16(), 404 | 410))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `view`, `download` or `upload` (any case) → the API's `VIEW`, `DOWNLOAD`, `UPLOAD`.
pub fn parse_link_type(s: &str) -> Result<&'static str, LinkError> {
    match s.to_ascii_lowercase().as_str() {
        "view" => Ok("VIEW"),
        "download" => Ok("DOWNLOAD"),
        "upload" => Ok("UPLOAD"),
        other => Err(LinkError::Invalid(format!(
            "unknown link type {other:?}: use view, download or upload"
        ))),
    }
}

/// A random password for `--generate-password`: 20 letters and digits (~119 bits).
pub fn generate_password() -> String {
    use rand::Rng;
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(20)
        .map(char::from)
        .collect()
}

/// What a caller asks for. The password is used only for a create and then dropped.
#[derive(Clone, Debug)]
pub struct LinkRequest {
    /// `VIEW`, `DOWNLOAD` or `UPLOAD`.
    pub link_type: String,
    pub password: Option<Secret>,
    pub expires_in_days: Option<u32>,
    pub expires_at: Option<String>,
    pub max_downloads: Option<u64>,
    pub custom_name: Option<String>,
    /// Make a new URL even if the stored link is still active.
    pub regenerate: bool,
}

impl Default for LinkRequest {
    fn default() -> Self {
        LinkRequest {
            link_type: "DOWNLOAD".into(),
            password: None,
            expires_in_days: None,
            expires_at: None,
            max_downloads: None,
            custom_name: None,
            regenerate: false,
        }
    }
}

impl LinkRequest {
    pub fn stored_options(&self) -> StoredOptions {
        StoredOptions {
            password_required: self.password.is_some(),
            expires_in_days: self.expires_in_days,
            expires_at: self.expires_at.clone(),
            max_downloads: self.max_downloads,
            custom_name: self.custom_name.clone(),
        }
    }

    /// Catches what the server would refuse with a less helpful message.
    pub fn validate(&self) -> Result<(), LinkError> {
        if self.expires_in_days.is_some() && self.expires_at.is_some() {
            return Err(LinkError::Invalid(
                "give either --expires-in-days or --expires-at, not both".into(),
            ));
        }
        if self.expires_in_days == Some(0) || self.max_downloads == Some(0) {
            return Err(LinkError::Invalid(
                "--expires-in-days and --max-downloads must be at least 1".into(),
            ));
        }
        if let Some(at) = &self.expires_at {
            let t = parse_iso(at).ok_or_else(|| {
                LinkError::Invalid(format!(
                    "--expires-at {at:?} is not an RFC 3339 timestamp (e.g. 2030-01-31T12:00:00Z)"
                ))
            })?;
            if t <= unix_now() {
                return Err(LinkError::Invalid(format!(
                    "--expires-at {at} is in the past"
                )));
            }
        }
        if self
            .password
            .as_ref()
            .is_some_and(|p| p.expose().is_empty())
        {
            return Err(LinkError::Invalid("the password is empty".into()));
        }
        Ok(())
    }
}

/// An RFC 3339 timestamp as unix seconds.
pub fn parse_iso(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// The remote thing a link would point at.
#[derive(Clone, Debug)]
pub struct Target {
    pub mirror: MirrorRecord,
    /// Mirror-relative path (`""` = the mirror root).
    pub path: String,
    /// `file`, `folder` or `share`.
    pub resource_type: String,
    pub resource_id: String,
}

/// A local path placed in a mirror.
#[derive(Clone, Debug)]
pub struct Located {
    pub config: MirrorConfig,
    pub rel: RelPath,
    pub abs: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Created,
    Reused,
    Regenerated,
}

/// The answer to [`LinkManager::ensure`].
#[derive(Clone, Debug, Serialize)]
pub struct Ensured {
    pub link: LinkRecord,
    pub outcome: Outcome,
    /// The link this one replaced (revoked), on a regeneration.
    pub replaced: Option<String>,
    /// Why the old link was replaced.
    pub reason: Option<String>,
}

/// A stored link with what the server said about it on the last refresh.
#[derive(Clone, Debug, Serialize)]
pub struct Listed {
    #[serde(flatten)]
    pub link: LinkRecord,
    pub mirror: String,
    pub download_count: Option<u64>,
}

/// The server's status, with a reached download cap called what it is.
pub fn effective_status(l: &Link) -> String {
    if l.max_downloads.is_some_and(|m| l.download_count >= m) {
        return "exhausted".into();
    }
    l.status.clone().unwrap_or_else(|| "active".into())
}

/// The link manager: the ScaiDrive client, the store, and the current mirror settings
/// (replaced on reload). Cheap to clone.
#[derive(Clone)]
pub struct LinkManager {
    client: Client,
    store: Store,
    configs: watch::Receiver<Arc<Vec<MirrorConfig>>>,
    events: crate::events::EventBus,
}

impl std::fmt::Debug for LinkManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkManager").finish_non_exhaustive()
    }
}

impl LinkManager {
    pub fn new(
        client: Client,
        store: Store,
        configs: watch::Receiver<Arc<Vec<MirrorConfig>>>,
    ) -> LinkManager {
        LinkManager {
            client,
            store,
            configs,
            events: crate::events::EventBus::default(),
        }
    }

    /// Publishes link creations and renewals to `events`.
    pub fn with_events(mut self, events: crate::events::EventBus) -> LinkManager {
        self.events = events;
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Places an absolute local path in the mirror whose root contains it (the deepest
    /// one), refusing paths outside every mirror, missing paths and ignored paths.
    pub async fn locate(&self, path: &Path) -> Result<Located, LinkError> {
        let configs = self.configs.borrow().clone();
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || locate(&configs, &path))
            .await
            .map_err(|e| LinkError::Invalid(format!("locating the path: {e}")))?
    }

    async fn mirror_record(&self, name: &str) -> Result<Option<MirrorRecord>, LinkError> {
        Ok(self
            .store
            .mirrors()
            .await?
            .into_iter()
            .find(|m| m.name == name))
    }

    /// The remote resource for a mirror-relative path, if it has reached the remote.
    pub async fn target(
        &self,
        mirror: &MirrorRecord,
        rel: &RelPath,
    ) -> Result<Option<Target>, LinkError> {
        let (resource_type, resource_id) = if rel.is_root() {
            match mirror.base_folder_id.as_deref() {
                None => return Ok(None),
                Some("") => ("share", mirror.share_id.clone()),
                Some(id) => ("folder", id.to_string()),
            }
        } else {
            match self.store.entry(mirror.id, rel.as_str()).await? {
                None => return Ok(None),
                Some(e) => (
                    if e.kind == EntryKind::Dir {
                        "folder"
                    } else {
                        "file"
                    },
                    e.remote_id,
                ),
            }
        };
        Ok(Some(Target {
            mirror: mirror.clone(),
            path: rel.as_str().to_string(),
            resource_type: resource_type.into(),
            resource_id,
        }))
    }

    /// Resolves a located path to its remote resource, waiting up to `wait` for the mirror
    /// to upload it; gives up early if the mirror is paused or stopped.
    pub async fn target_waiting(
        &self,
        located: &Located,
        handle: Option<&MirrorHandle>,
        wait: Duration,
    ) -> Result<Target, LinkError> {
        let name = located.config.display_name();
        let shown = located.abs.display().to_string();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(m) = self.mirror_record(&name).await?
                && let Some(t) = self.target(&m, &located.rel).await?
            {
                return Ok(t);
            }
            if let Some(s) = handle.map(MirrorHandle::status)
                && matches!(
                    s.state,
                    MirrorState::Paused | MirrorState::NeedsCredentials | MirrorState::Error
                )
            {
                return Err(LinkError::NotYetRemote {
                    path: shown,
                    why: format!(
                        "mirror {name} is {}{}",
                        s.state,
                        s.reason.map(|r| format!(" ({r})")).unwrap_or_default()
                    ),
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(LinkError::NotYetRemote {
                    path: shown,
                    why: if wait.is_zero() {
                        format!("mirror {name} has not uploaded it")
                    } else {
                        format!(
                            "mirror {name} did not upload it within {} s; see `scaidrivectl status` and `failures`",
                            wait.as_secs()
                        )
                    },
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Returns the stored link for `target` with the same options if the server says it is
    /// active; otherwise creates one (or regenerates the stored one).
    pub async fn ensure(&self, target: &Target, req: &LinkRequest) -> Result<Ensured, LinkError> {
        let got = self.ensure_link(target, req).await?;
        if got.outcome != Outcome::Reused {
            self.events.publish(
                &target.mirror.name,
                crate::events::EventKind::LinkCreated {
                    path: target.path.clone(),
                    link_id: got.link.id.clone(),
                    renewed: got.outcome == Outcome::Regenerated,
                },
            );
        }
        Ok(got)
    }

    async fn ensure_link(&self, target: &Target, req: &LinkRequest) -> Result<Ensured, LinkError> {
        req.validate()?;
        let wanted = req.stored_options();
        let share = target.mirror.share_id.clone();
        // A request without a password reuses a protected link with otherwise equal options
        // (the user asks for "the link of this path"); one with a password never reuses an
        // unprotected link.
        let mut candidates: Vec<LinkRecord> = self
            .store
            .live_links_at(target.mirror.id, &target.path)
            .await?
            .into_iter()
            .filter(|l| {
                l.link_type == req.link_type
                    && l.resource_id == target.resource_id
                    && l.options.same_except_password(&wanted)
                    && (req.password.is_none() || l.options.password_required)
            })
            .collect();
        // Prefer the exact option match; the list is newest first and the sort is stable.
        candidates.sort_by_key(|l| l.options != wanted);
        let Some(old) = candidates.into_iter().next() else {
            let record = self.create(target, req).await?;
            self.store.insert_link(record.clone()).await?;
            return Ok(Ensured {
                link: record,
                outcome: Outcome::Created,
                replaced: None,
                reason: None,
            });
        };

        let reason = if req.regenerate {
            "a new URL was asked for".to_string()
        } else {
            match self.client.link(&old.id).await {
                Ok(l) => {
                    let status = effective_status(&l);
                    self.store
                        .set_link_state(&old.id, &status, l.expires_at.clone())
                        .await?;
                    if status == "active" {
                        let mut link = old;
                        link.status = status;
                        link.expires_at = l.expires_at;
                        return Ok(Ensured {
                            link,
                            outcome: Outcome::Reused,
                            replaced: None,
                            reason: None,
                        });
                    }
                    format!("it is {status}")
                }
                Err(e) if is_missing(&e) => "the server no longer has it".to_string(),
                Err(e) => return Err(LinkError::from_remote(e, &share)),
            }
        };
        if old.options.password_required && req.password.is_none() {
            return Err(LinkError::PasswordNeeded {
                id: old.id,
                path: display_path(&target.path),
                why: reason,
            });
        }
        let record = self.create(target, req).await?;
        match self.client.revoke_link(&old.id).await {
            Ok(()) => {}
            Err(e) if is_missing(&e) => {}
            Err(e) => {
                // The new link works; the old one stays listed so `unlink` can retry.
                tracing::warn!(link = %old.id, "could not revoke the replaced link: {e}");
                self.store.insert_link(record.clone()).await?;
                return Ok(Ensured {
                    link: record,
                    outcome: Outcome::Regenerated,
                    replaced: None,
                    reason: Some(reason),
                });
            }
        }
        self.store.replace_link(&old.id, record.clone()).await?;
        Ok(Ensured {
            link: record,
            outcome: Outcome::Regenerated,
            replaced: Some(old.id),
            reason: Some(reason),
        })
    }

    /// Creates a link on the server; returns the record to store (without the password).
    async fn create(&self, target: &Target, req: &LinkRequest) -> Result<LinkRecord, LinkError> {
        let mut options = LinkOptions {
            password: req.password.clone(),
            expires_in_days: req.expires_in_days,
            expires_at: req.expires_at.clone(),
            max_downloads: req.max_downloads,
            custom_name: req.custom_name.clone(),
            ..LinkOptions::default()
        };
        if req.link_type == "UPLOAD" {
            if target.resource_type != "folder" {
                return Err(LinkError::Invalid(format!(
                    "UPLOAD links need a folder, and {} is a {}",
                    display_path(&target.path),
                    if target.resource_type == "share" {
                        "whole share (the mirror maps to the share root)"
                    } else {
                        "file"
                    }
                )));
            }
            // Recipients drop files into the linked folder itself.
            options.upload_folder_id = Some(target.resource_id.clone());
        }
        let new = NewLink {
            resource_type: target.resource_type.clone(),
            resource_id: target.resource_id.clone(),
            share_id: target.mirror.share_id.clone(),
            link_type: req.link_type.clone(),
            options,
        };
        let l = self
            .client
            .create_link(&new)
            .await
            .map_err(|e| LinkError::from_remote(e, &target.mirror.share_id))?;
        let mut stored = req.stored_options();
        stored.password_required = l.password_required || req.password.is_some();
        Ok(LinkRecord {
            status: effective_status(&l),
            id: l.id,
            mirror_id: target.mirror.id,
            path: target.path.clone(),
            resource_type: target.resource_type.clone(),
            resource_id: target.resource_id.clone(),
            link_type: req.link_type.clone(),
            options: stored,
            url: l.url.unwrap_or_default(),
            short_url: l.short_url,
            expires_at: l.expires_at,
            created_at: unix_now(),
        })
    }

    /// Stored links (of one mirror), oldest first; with `refresh`, their status and expiry
    /// are first brought up to date from the server (one listing per share).
    pub async fn list(
        &self,
        mirror: Option<&str>,
        refresh: bool,
    ) -> Result<Vec<Listed>, LinkError> {
        let mirrors = self.store.mirrors().await?;
        let mirror_id = match mirror {
            None => None,
            Some(name) => Some(
                mirrors
                    .iter()
                    .find(|m| m.name == name)
                    .map(|m| m.id)
                    .ok_or_else(|| LinkError::Invalid(format!("no mirror named {name:?}")))?,
            ),
        };
        let mut links = self.store.links(mirror_id).await?;
        let mut counts = std::collections::HashMap::new();
        if refresh {
            let share_of = |id| {
                mirrors
                    .iter()
                    .find(|m| m.id == id)
                    .map(|m| m.share_id.clone())
            };
            let mut shares: Vec<String> = links
                .iter()
                .filter(|l| !l.is_terminal())
                .filter_map(|l| share_of(l.mirror_id))
                .collect();
            shares.sort();
            shares.dedup();
            let mut remote = std::collections::HashMap::new();
            for share in &shares {
                let listed = self
                    .client
                    .links(Some(share))
                    .await
                    .map_err(|e| LinkError::from_remote(e, share))?;
                remote.extend(listed.into_iter().map(|l| (l.id.clone(), l)));
            }
            for l in links.iter_mut().filter(|l| !l.is_terminal()) {
                let fresh = match remote.remove(&l.id) {
                    Some(r) => Some(r),
                    // Not in the listing (another page of visibility rules): ask for it.
                    None => match self.client.link(&l.id).await {
                        Ok(r) => Some(r),
                        Err(e) if is_missing(&e) => None,
                        Err(e) => {
                            let share = share_of(l.mirror_id).unwrap_or_default();
                            return Err(LinkError::from_remote(e, &share));
                        }
                    },
                };
                match fresh {
                    Some(r) => {
                        l.status = effective_status(&r);
                        l.expires_at = r.expires_at.clone();
                        counts.insert(l.id.clone(), r.download_count);
                    }
                    None => l.status = "gone".into(),
                }
                self.store
                    .set_link_state(&l.id, &l.status, l.expires_at.clone())
                    .await?;
            }
        }
        Ok(links
            .into_iter()
            .map(|l| Listed {
                mirror: mirrors
                    .iter()
                    .find(|m| m.id == l.mirror_id)
                    .map(|m| m.name.clone())
                    .unwrap_or_default(),
                download_count: counts.get(&l.id).copied(),
                link: l,
            })
            .collect())
    }

    /// Revokes one stored link (204, irreversible) and marks it revoked.
    pub async fn revoke(&self, id: &str) -> Result<LinkRecord, LinkError> {
        let mut link = self
            .store
            .link(id)
            .await?
            .ok_or_else(|| LinkError::UnknownLink(id.to_string()))?;
        let share = self
            .store
            .mirrors()
            .await?
            .into_iter()
            .find(|m| m.id == link.mirror_id)
            .map(|m| m.share_id)
            .unwrap_or_default();
        match self.client.revoke_link(id).await {
            Ok(()) => {}
            // Already gone on the server: the goal (nobody can use it) holds.
            Err(e) if is_missing(&e) => {}
            Err(e) => return Err(LinkError::from_remote(e, &share)),
        }
        self.store.set_link_status(id, "revoked").await?;
        link.status = "revoked".into();
        Ok(link)
    }

    /// Revokes every live link of a located path.
    pub async fn revoke_path(&self, located: &Located) -> Result<Vec<LinkRecord>, LinkError> {
        let name = located.config.display_name();
        let Some(m) = self.mirror_record(&name).await? else {
            return Err(LinkError::UnknownLink(located.abs.display().to_string()));
        };
        let live = self.store.live_links_at(m.id, located.rel.as_str()).await?;
        if live.is_empty() {
            return Err(LinkError::UnknownLink(format!(
                "for {}",
                located.abs.display()
            )));
        }
        let mut out = Vec::new();
        for l in live {
            out.push(self.revoke(&l.id).await?);
        }
        Ok(out)
    }
}

fn display_path(rel: &str) -> String {
    if rel.is_empty() {
        "the mirror root".into()
    } else {
        rel.to_string()
    }
}

/// [`LinkManager::locate`] without the runtime: picks the deepest mirror root containing
/// `path` (comparing both as given and canonicalized, since either side may go through a
/// symlink), then checks that the path exists and is not ignored.
pub fn locate(configs: &[MirrorConfig], path: &Path) -> Result<Located, LinkError> {
    let shown = path.display().to_string();
    let canonical = std::fs::canonicalize(path).ok();
    let mut best: Option<(usize, &MirrorConfig, PathBuf)> = None;
    for cfg in configs {
        let roots = [
            Some(cfg.path.clone()),
            std::fs::canonicalize(&cfg.path).ok(),
        ];
        for root in roots.into_iter().flatten() {
            for p in [Some(path.to_path_buf()), canonical.clone()]
                .into_iter()
                .flatten()
            {
                if let Ok(rel) = p.strip_prefix(&root) {
                    let depth = root.components().count();
                    if best.as_ref().is_none_or(|(d, _, _)| depth > *d) {
                        best = Some((depth, cfg, rel.to_path_buf()));
                    }
                }
            }
        }
    }
    let Some((_, cfg, rel)) = best else {
        let mirrors = if configs.is_empty() {
            "no mirrors are configured".to_string()
        } else {
            format!(
                "mirrors: {}",
                configs
                    .iter()
                    .map(|c| format!("{} at {}", c.display_name(), c.path.display()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        return Err(LinkError::NotInMirror {
            path: shown,
            mirrors,
        });
    };
    let rel = RelPath::from_path(&rel).map_err(|e| LinkError::Invalid(format!("{shown}: {e}")))?;
    let abs = rel.to_path(&cfg.path);
    let meta = std::fs::symlink_metadata(&abs).map_err(|_| LinkError::NoSuchPath(shown.clone()))?;
    if meta.file_type().is_symlink() {
        return Err(LinkError::Invalid(format!(
            "{shown} is a symbolic link; the mirror does not follow symlinks, so it is not on the remote"
        )));
    }
    let rules = IgnoreRules::load(&cfg.path, &cfg.exclude)
        .map_err(|e| LinkError::Invalid(format!("ignore rules of {}: {e}", cfg.display_name())))?;
    if rules.is_ignored(&rel, meta.is_dir()) || IgnoreRules::is_ignore_file(&rel) {
        return Err(LinkError::Ignored {
            path: shown,
            mirror: cfg.display_name(),
        });
    }
    Ok(Located {
        config: cfg.clone(),
        rel,
        abs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror(name: &str, root: &Path) -> MirrorConfig {
        MirrorConfig {
            name: Some(name.into()),
            path: root.to_path_buf(),
            share_id: "shr".into(),
            remote_path: String::new(),
            exclude: vec!["*.skipme".into(), "build/".into()],
            delete: crate::config::DeleteMode::Trash,
            quiet_period_ms: 0,
            max_delay_secs: 0,
            rescan_interval_secs: 0,
            watch: crate::config::WatchMode::Auto,
            poll_interval_secs: 60,
            unload_idle_secs: 30,
            unload_min_entries: 200_000,
            mass_delete_count: 0,
            mass_delete_percent: 0,
            link: None,
            remote_poll_secs: 30,
            remote_extras: crate::config::RemoteExtras::Keep,
        }
    }

    #[test]
    fn locate_picks_the_mirror_and_refuses_what_it_cannot_link() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        let nested = a.join("inner");
        std::fs::create_dir_all(nested.join("build/x")).unwrap();
        std::fs::write(a.join("f.txt"), b"x").unwrap();
        std::fs::write(a.join("g.skipme"), b"x").unwrap();
        std::fs::write(nested.join("h.txt"), b"x").unwrap();
        let cfgs = vec![mirror("a", &a), mirror("nested", &nested)];

        let l = locate(&cfgs, &a.join("f.txt")).unwrap();
        assert_eq!(
            (l.config.display_name(), l.rel.as_str()),
            ("a".into(), "f.txt")
        );
        let l = locate(&cfgs, &a).unwrap();
        assert!(l.rel.is_root());
        let l = locate(&cfgs, &nested.join("h.txt")).unwrap();
        assert_eq!(
            (l.config.display_name(), l.rel.as_str()),
            ("nested".into(), "h.txt"),
            "the deepest root wins"
        );
        let cases: [(PathBuf, &str); 4] = [
            (d.path().join("elsewhere"), "not_in_mirror"),
            (a.join("missing.txt"), "no_such_path"),
            (a.join("g.skipme"), "ignored"),
            (nested.join("build/x"), "ignored"),
        ];
        for (p, code) in cases {
            let e = locate(&cfgs, &p).unwrap_err();
            assert_eq!(e.code(), code, "{}: {e}", p.display());
        }
    }

    #[test]
    fn requests_are_checked_before_any_call() {
        let ok = LinkRequest::default();
        assert!(ok.validate().is_ok());
        let both = LinkRequest {
            expires_in_days: Some(1),
            expires_at: Some("2999-01-01T00:00:00Z".into()),
            ..LinkRequest::default()
        };
        assert!(both.validate().is_err());
        let past = LinkRequest {
            expires_at: Some("2001-01-01T00:00:00Z".into()),
            ..LinkRequest::default()
        };
        assert!(past.validate().unwrap_err().to_string().contains("past"));
        assert_eq!(parse_link_type("View").unwrap(), "VIEW");
        assert!(parse_link_type("edit").is_err());
        let p = generate_password();
        assert_eq!(p.len(), 20);
        assert_ne!(p, generate_password());
        let with_pw = LinkRequest {
            password: Some(Secret::new("s3cret")),
            ..LinkRequest::default()
        };
        assert!(with_pw.stored_options().password_required);
        assert!(!format!("{with_pw:?}").contains("s3cret"));
    }
}
