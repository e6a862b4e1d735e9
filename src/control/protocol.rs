//! The control protocol: every route of the control API with the request it takes and the
//! response it gives, as types shared by the daemon (which builds them) and `scaidrivectl`
//! (which parses and renders them), so the compiler ties the two together. These types
//! are also the `--json` schema of `scaidrivectl`; a change to a field here is a change to
//! that documented schema and needs [`PROTOCOL`] bumped when it is incompatible.
//!
//! | route | request | response |
//! | --- | --- | --- |
//! | `GET /v1/status?mirror=` | [`MirrorQuery`] | [`StatusResponse`] |
//! | `GET /v1/failures?mirror=` | [`MirrorQuery`] | [`FailuresResponse`] |
//! | `POST /v1/pause`, `/v1/rescan`, `/v1/retry` | [`ActionRequest`] | [`ActionResponse`] |
//! | `POST /v1/resume` | [`ResumeRequest`] | [`ActionResponse`] |
//! | `POST /v1/verify` | [`VerifyRequest`] | [`VerifyResponse`] |
//! | `POST /v1/links` | [`LinkBody`] | [`LinkResponse`] |
//! | `GET /v1/links?mirror=&refresh=` | [`LinksQuery`] | [`LinksResponse`] |
//! | `POST /v1/unlink` | [`UnlinkBody`] | [`UnlinkResponse`] |
//! | `GET /metrics` | none | Prometheus text |
//! | `GET /v1/limit` | none | [`LimitResponse`] |
//! | `POST /v1/limit` | [`LimitRequest`] | [`LimitResponse`] |
//! | `GET /v1/events?mirror=` | [`MirrorQuery`] | newline-delimited [`crate::control::events::EventLine`] |
//!
//! Every error answer is an [`ErrorResponse`]. Failures and links have wire types of their
//! own ([`FailureItem`], [`LinkInfo`]) rather than the store's rows, so the database can
//! change without changing what scripts read.

use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::links::Outcome;
pub use crate::mirror::{MirrorState, MirrorStatus, SkippedItem, VerifyReport};
use crate::remote::Secret;
use crate::store::{Failure, LinkRecord, MirrorId, StoredOptions};

/// Version of the control protocol (bumped on incompatible changes to routes or JSON).
pub const PROTOCOL: u32 = 1;

/// The routes' paths, named once for the server's router and the client.
pub mod route {
    pub const STATUS: &str = "/v1/status";
    pub const FAILURES: &str = "/v1/failures";
    pub const PAUSE: &str = "/v1/pause";
    pub const RESUME: &str = "/v1/resume";
    pub const RESCAN: &str = "/v1/rescan";
    pub const RETRY: &str = "/v1/retry";
    pub const VERIFY: &str = "/v1/verify";
    pub const LINKS: &str = "/v1/links";
    pub const UNLINK: &str = "/v1/unlink";
    pub const METRICS: &str = "/metrics";
    pub const LIMIT: &str = "/v1/limit";
    pub const EVENTS: &str = "/v1/events";
}

/// Percent-encodes a query value; only what the daemon's query parser would misread.
fn query_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(char::from(b))
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Requests

/// The query of `GET /v1/status` and `GET /v1/failures`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct MirrorQuery {
    /// A mirror name; absent = every mirror.
    #[serde(default)]
    pub mirror: Option<String>,
}

impl MirrorQuery {
    pub fn new(mirror: Option<String>) -> MirrorQuery {
        MirrorQuery { mirror }
    }

    /// `""` or `?mirror=NAME`, to append to the route's path.
    pub fn to_query(&self) -> String {
        match &self.mirror {
            Some(m) => format!("?mirror={}", query_value(m)),
            None => String::new(),
        }
    }
}

/// The body of `POST /v1/pause`, `/v1/rescan` and `/v1/retry`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct ActionRequest {
    /// A mirror name; absent = every mirror.
    #[serde(default)]
    pub mirror: Option<String>,
}

/// The body of `POST /v1/resume`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct ResumeRequest {
    #[serde(default)]
    pub mirror: Option<String>,
    /// Let the next pass execute the deletes that paused the mirror.
    #[serde(default)]
    pub allow_deletes: bool,
}

/// The body of `POST /v1/verify`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct VerifyRequest {
    #[serde(default)]
    pub mirror: Option<String>,
    /// Also compare each file's SHA-256 (one metadata request per file).
    #[serde(default)]
    pub checksums: bool,
    /// Forget drifted entries so the next pass uploads them again.
    #[serde(default)]
    pub repair: bool,
}

fn secret_in<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(Secret::new))
}

// The password has to travel from scaidrivectl to the daemon: this is the one place it is
// written out, into a request on the 0600 socket.
fn secret_out<S: Serializer>(s: &Option<Secret>, ser: S) -> Result<S::Ok, S::Error> {
    s.as_ref().map(Secret::expose).serialize(ser)
}

/// The body of `POST /v1/links`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LinkBody {
    /// Absolute local path inside a mirror root.
    pub path: PathBuf,
    #[serde(default, rename = "type")]
    pub link_type: Option<String>,
    #[serde(default, deserialize_with = "secret_in", serialize_with = "secret_out")]
    pub password: Option<Secret>,
    #[serde(default)]
    pub expires_in_days: Option<u32>,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub max_downloads: Option<u64>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub regenerate: bool,
    /// How long to wait for the path to reach the remote (default 60 s).
    #[serde(default)]
    pub wait_secs: Option<u64>,
}

/// The query of `GET /v1/links`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct LinksQuery {
    #[serde(default)]
    pub mirror: Option<String>,
    /// Ask the server for each link's status first (default true).
    #[serde(default)]
    pub refresh: Option<bool>,
}

impl LinksQuery {
    /// `""` or `?mirror=NAME&refresh=BOOL`, to append to the route's path.
    pub fn to_query(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = &self.mirror {
            parts.push(format!("mirror={}", query_value(m)));
        }
        if let Some(r) = self.refresh {
            parts.push(format!("refresh={r}"));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("?{}", parts.join("&"))
        }
    }
}

/// The body of `POST /v1/unlink`: `target` is a link id or a path; `path` is that path
/// made absolute by the caller (whose working directory the daemon does not know).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UnlinkBody {
    pub target: String,
    #[serde(default)]
    pub path: Option<PathBuf>,
}

// ---------------------------------------------------------------------------------------
// Responses

/// Every error answer: a one-line `error`, and for link routes a machine-readable `code`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct ErrorResponse {
    #[serde(default)]
    pub protocol: u32,
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl ErrorResponse {
    pub fn new(error: impl Into<String>) -> ErrorResponse {
        ErrorResponse {
            protocol: PROTOCOL,
            error: error.into(),
            code: None,
        }
    }
}

/// Facts about the running daemon shown by `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub version: String,
    pub pid: u32,
    pub started_at: i64,
    pub state_dir: String,
    pub socket: String,
}

/// `GET /v1/status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusResponse {
    pub protocol: u32,
    pub daemon: DaemonInfo,
    pub mirrors: Vec<MirrorView>,
    /// The bandwidth limit in force and the current upload rate (absent from daemons
    /// older than the limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<BandwidthView>,
}

/// The daemon's bandwidth limit as `status` and `limit` show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BandwidthView {
    /// The schedule as written (`"off"`, `"2MiB/s"`, a timetable).
    pub schedule: String,
    /// `"config"`, or `"override"` after `scaidrivectl limit` (until the next reload).
    pub source: String,
    /// Bytes a second allowed now; absent = no limit.
    pub limit_bps: Option<u64>,
    /// Bytes a second of request bodies over the last two seconds.
    pub current_bps: u64,
}

impl From<crate::remote::bandwidth::Snapshot> for BandwidthView {
    fn from(s: crate::remote::bandwidth::Snapshot) -> BandwidthView {
        BandwidthView {
            schedule: s.schedule,
            source: match s.source {
                crate::remote::bandwidth::Source::Config => "config",
                crate::remote::bandwidth::Source::Override => "override",
            }
            .into(),
            limit_bps: s.limit,
            current_bps: s.current_bps,
        }
    }
}

/// The body of `POST /v1/limit`: a rate, `off`, or a timetable, as in
/// `daemon.bandwidth_limit`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitRequest {
    pub limit: String,
}

/// `POST /v1/limit` and `GET /v1/limit`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitResponse {
    pub protocol: u32,
    pub bandwidth: BandwidthView,
}

/// One mirror in `status`: its [`MirrorStatus`] with `in_sync` worked out by the daemon, so
/// scripts and `wait` do not each restate the rule.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MirrorView {
    #[serde(flatten)]
    pub status: MirrorStatus,
    pub in_sync: bool,
}

impl From<MirrorStatus> for MirrorView {
    fn from(status: MirrorStatus) -> MirrorView {
        MirrorView {
            in_sync: status.in_sync(),
            status,
        }
    }
}

impl MirrorState {
    /// The state as the protocol spells it (`needs_credentials`), which is what the CLI
    /// prints; `Display` is the log's spelling (`needs-credentials`).
    pub fn wire_name(self) -> &'static str {
        match self {
            MirrorState::Starting => "starting",
            MirrorState::Scanning => "scanning",
            MirrorState::Syncing => "syncing",
            MirrorState::Idle => "idle",
            MirrorState::Paused => "paused",
            MirrorState::NeedsCredentials => "needs_credentials",
            MirrorState::Error => "error",
        }
    }
}

/// `POST /v1/pause`, `/v1/resume`, `/v1/rescan`, `/v1/retry`: the mirrors that took the
/// command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionResponse {
    pub protocol: u32,
    pub action: String,
    pub mirrors: Vec<String>,
}

/// `GET /v1/failures`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailuresResponse {
    pub protocol: u32,
    pub mirrors: Vec<MirrorFailures>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorFailures {
    pub mirror: String,
    pub failures: Vec<FailureItem>,
}

/// One failed item, as the store records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureItem {
    pub path: String,
    pub reason: String,
    /// Retried only when the item changes or on `scaidrivectl retry`.
    pub permanent: bool,
    pub attempts: u32,
    pub first_failed_at: i64,
    pub last_failed_at: i64,
    pub next_retry_at: i64,
}

impl From<Failure> for FailureItem {
    fn from(f: Failure) -> FailureItem {
        FailureItem {
            path: f.path,
            reason: f.reason,
            permanent: f.permanent,
            attempts: f.attempts,
            first_failed_at: f.first_failed_at,
            last_failed_at: f.last_failed_at,
            next_retry_at: f.next_retry_at,
        }
    }
}

/// `POST /v1/verify`: one report per mirror asked.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VerifyResponse {
    pub protocol: u32,
    pub reports: Vec<VerifyReport>,
}

/// A sharing link as the daemon keeps it (never with its password).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkInfo {
    pub id: String,
    pub mirror_id: MirrorId,
    /// Mirror-relative path (`""` = the mirror root).
    pub path: String,
    /// `file`, `folder` or `share`.
    pub resource_type: String,
    pub resource_id: String,
    /// `VIEW`, `DOWNLOAD` or `UPLOAD`.
    pub link_type: String,
    pub options: StoredOptions,
    pub url: String,
    pub short_url: Option<String>,
    pub expires_at: Option<String>,
    /// `active`, `expired`, `revoked`, `disabled`, `exhausted` or `gone`.
    pub status: String,
    pub created_at: i64,
}

impl From<LinkRecord> for LinkInfo {
    fn from(l: LinkRecord) -> LinkInfo {
        LinkInfo {
            id: l.id,
            mirror_id: l.mirror_id,
            path: l.path,
            resource_type: l.resource_type,
            resource_id: l.resource_id,
            link_type: l.link_type,
            options: l.options,
            url: l.url,
            short_url: l.short_url,
            expires_at: l.expires_at,
            status: l.status,
            created_at: l.created_at,
        }
    }
}

/// `POST /v1/links`: the link and whether it was created, reused or regenerated.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LinkResponse {
    pub protocol: u32,
    pub mirror: String,
    pub outcome: Outcome,
    /// The link this one replaced (revoked), on a regeneration.
    pub replaced: Option<String>,
    /// Why the old link was replaced.
    pub reason: Option<String>,
    pub link: LinkInfo,
}

/// `GET /v1/links`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LinksResponse {
    pub protocol: u32,
    pub links: Vec<ListedLink>,
}

/// A stored link with its mirror's name and what the server said on the last refresh.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedLink {
    #[serde(flatten)]
    pub link: LinkInfo,
    pub mirror: String,
    pub download_count: Option<u64>,
}

impl From<crate::links::Listed> for ListedLink {
    fn from(l: crate::links::Listed) -> ListedLink {
        ListedLink {
            link: l.link.into(),
            mirror: l.mirror,
            download_count: l.download_count,
        }
    }
}

/// `POST /v1/unlink`: the links revoked.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UnlinkResponse {
    pub protocol: u32,
    pub revoked: Vec<LinkInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn keys(v: &Value) -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    }

    fn failure() -> Failure {
        Failure {
            path: "a/b.txt".into(),
            reason: "name rejected".into(),
            permanent: true,
            attempts: 3,
            first_failed_at: 10,
            last_failed_at: 20,
            next_retry_at: 30,
        }
    }

    fn record() -> LinkRecord {
        LinkRecord {
            id: "lnk_1".into(),
            mirror_id: 7,
            path: "docs".into(),
            resource_type: "folder".into(),
            resource_id: "fld_1".into(),
            link_type: "DOWNLOAD".into(),
            options: StoredOptions {
                password_required: true,
                max_downloads: Some(5),
                ..StoredOptions::default()
            },
            url: "https://x/l/1".into(),
            short_url: None,
            expires_at: Some("2030-01-01T00:00:00Z".into()),
            status: "active".into(),
            created_at: 99,
        }
    }

    /// The wire types are copies of the store's rows: they must say exactly what the rows
    /// said when the daemon serialized those directly.
    #[test]
    fn wire_copies_serialize_like_the_store_rows() {
        let f = failure();
        assert_eq!(
            serde_json::to_value(FailureItem::from(f.clone())).unwrap(),
            serde_json::to_value(&f).unwrap()
        );
        let l = record();
        assert_eq!(
            serde_json::to_value(LinkInfo::from(l.clone())).unwrap(),
            serde_json::to_value(&l).unwrap()
        );
        let listed = crate::links::Listed {
            link: l,
            mirror: "docs".into(),
            download_count: Some(2),
        };
        let want = serde_json::to_value(&listed).unwrap();
        let wire = ListedLink::from(listed);
        assert_eq!(serde_json::to_value(&wire).unwrap(), want);
        let back: ListedLink = serde_json::from_value(want).unwrap();
        assert_eq!(back, wire);
    }

    #[test]
    fn a_mirror_view_is_the_status_plus_in_sync_and_round_trips() {
        let cfg: crate::config::MirrorConfig = serde_json::from_value(json!({
            "path": "/m", "share_id": "shr_1"
        }))
        .unwrap();
        let mut s = MirrorStatus::new("alpha", &cfg);
        s.state = MirrorState::NeedsCredentials;
        s.reason = Some("token expired".into());
        s.eta_secs = Some(4);
        s.skipped.push(SkippedItem {
            path: "l".into(),
            reason: "symlink".into(),
        });
        let bare = serde_json::to_value(&s).unwrap();
        let view = serde_json::to_value(MirrorView::from(s)).unwrap();
        let mut want = keys(&bare);
        want.push("in_sync".into());
        want.sort();
        assert_eq!(keys(&view), want);
        assert_eq!(view["in_sync"], false);
        assert_eq!(view["state"], "needs_credentials");
        let back: MirrorView = serde_json::from_value(view.clone()).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), view);
    }

    #[test]
    fn wire_names_are_the_serde_names() {
        for s in [
            MirrorState::Starting,
            MirrorState::Scanning,
            MirrorState::Syncing,
            MirrorState::Idle,
            MirrorState::Paused,
            MirrorState::NeedsCredentials,
            MirrorState::Error,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.wire_name(), "{s:?}");
        }
    }

    #[test]
    fn a_link_body_carries_its_password_but_never_shows_it() {
        let body = LinkBody {
            path: "/m/a".into(),
            link_type: Some("view".into()),
            password: Some(Secret::new("hunter2")),
            wait_secs: Some(0),
            ..LinkBody::default()
        };
        assert!(!format!("{body:?}").contains("hunter2"));
        let v = serde_json::to_value(&body).unwrap();
        assert_eq!(v["password"], "hunter2");
        assert_eq!(v["type"], "view");
        let back: LinkBody = serde_json::from_value(v).unwrap();
        assert_eq!(back.password.as_ref().map(Secret::expose), Some("hunter2"));
        assert_eq!(back.link_type.as_deref(), Some("view"));
    }

    #[test]
    fn queries_encode_what_would_be_misread() {
        let cases = [
            (None, ""),
            (Some("alpha"), "?mirror=alpha"),
            (Some("a b&c"), "?mirror=a%20b%26c"),
            (Some("é+%"), "?mirror=%C3%A9%2B%25"),
        ];
        for (mirror, want) in cases {
            assert_eq!(
                MirrorQuery::new(mirror.map(str::to_string)).to_query(),
                want,
                "{mirror:?}"
            );
        }
        let q = LinksQuery {
            mirror: Some("x y".into()),
            refresh: Some(false),
        };
        assert_eq!(q.to_query(), "?mirror=x%20y&refresh=false");
        assert_eq!(LinksQuery::default().to_query(), "");
    }

    #[test]
    fn errors_carry_a_code_only_when_there_is_one() {
        let e = serde_json::to_value(ErrorResponse::new("boom")).unwrap();
        assert_eq!(keys(&e), ["error", "protocol"]);
        let parsed: ErrorResponse = serde_json::from_str(r#"{"error":"x"}"#).unwrap();
        assert_eq!(parsed.error, "x");
    }
}
