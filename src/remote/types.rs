//! Request and response bodies of the ScaiDrive API, as `scaidrive-api.md` and the seed
//! pages describe them.
//!
//! Responses are tolerant: unknown fields are ignored, and every field the docs do not
//! guarantee is optional or defaulted, so a server that adds or omits something does not
//! break the daemon. IDs and timestamps stay strings (IDs are opaque; timestamps are only
//! shown or compared, never computed with). Requests skip absent optional fields, so the
//! server's defaults apply.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::auth::Secret;

/// `GET /api/v1/health`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Health {
    pub status: String,
    pub version: Option<String>,
}

/// `GET /api/v1/users/me`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct User {
    pub id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub display_name: Option<String>,
    pub tenant_id: Option<String>,
    pub partner_id: Option<String>,
    pub groups: Vec<String>,
    pub scopes: Vec<String>,
    pub is_admin: bool,
    pub admin_role: Option<String>,
}

/// One entry of `GET /api/v1/users/me/shares` (note `type`, not `share_type`, here).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ShareSummary {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub share_type: Option<String>,
    /// The caller's role: `owner`, `admin`, `contributor` or `reader`.
    pub role: Option<String>,
    pub owner_id: Option<String>,
    pub quota_bytes: Option<u64>,
    pub used_bytes: Option<u64>,
    pub created_at: Option<String>,
}

impl ShareSummary {
    /// Writing needs `contributor` or better.
    pub fn can_write(&self) -> bool {
        matches!(
            self.role.as_deref(),
            Some("contributor" | "admin" | "owner")
        )
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SharesPage {
    pub shares: Vec<ShareSummary>,
    pub total: u64,
}

/// `GET /api/v1/shares/{id}`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Share {
    pub id: String,
    pub tenant_id: Option<String>,
    pub name: String,
    pub description: Option<String>,
    pub share_type: Option<String>,
    pub owner_id: Option<String>,
    pub is_public: bool,
    pub is_deleted: bool,
    pub quota_bytes: Option<u64>,
    pub used_bytes: Option<u64>,
    pub settings: Value,
    pub created_at: Option<String>,
    pub modified_at: Option<String>,
}

/// A folder (Folders seed: metadata shape).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Folder {
    pub id: String,
    pub tenant_id: Option<String>,
    pub share_id: String,
    /// `None` = the folder sits at the share root.
    pub parent_id: Option<String>,
    pub name: String,
    pub path: String,
    pub owner_id: Option<String>,
    pub created_by: Option<String>,
    pub created_at: Option<String>,
    pub modified_at: Option<String>,
    pub is_deleted: bool,
}

/// What a children listing item is.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    Folder,
    File,
    /// Anything newer than this client.
    #[default]
    #[serde(other)]
    Other,
}

/// One item of `GET /api/v1/folders/{id}/children`; folders carry only id, name, type.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ChildItem {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ItemKind,
    pub size: Option<u64>,
    pub mime_type: Option<String>,
    pub modified_at: Option<String>,
    /// Present with `include_deleted=true`.
    pub is_deleted: Option<bool>,
}

/// `GET /api/v1/folders/{id}/children`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Children {
    pub items: Vec<ChildItem>,
    pub path: String,
    pub total: u64,
}

impl Children {
    /// The live item called exactly `name` of `kind` (names compare byte for byte).
    pub fn find(&self, name: &str, kind: ItemKind) -> Option<&ChildItem> {
        self.items
            .iter()
            .find(|i| i.name == name && i.kind == kind && i.is_deleted != Some(true))
    }
}

/// A file (files reference: file object).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct RemoteFile {
    pub id: String,
    pub tenant_id: Option<String>,
    pub share_id: String,
    /// `None` for files at the share root.
    pub folder_id: Option<String>,
    pub name: String,
    pub path: String,
    pub mime_type: Option<String>,
    pub size: u64,
    /// Lowercase hex SHA-256 of the content.
    pub checksum_sha256: Option<String>,
    /// Starts at 1, +1 per content save.
    pub version: u64,
    pub owner_id: Option<String>,
    pub created_by: Option<String>,
    pub created_at: Option<String>,
    pub modified_by: Option<String>,
    pub modified_at: Option<String>,
    pub is_deleted: bool,
}

/// One entry of `GET /api/v1/files/{id}/versions` (newest first).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct FileVersion {
    pub id: String,
    pub version_number: u64,
    pub size: u64,
    pub checksum_sha256: Option<String>,
    pub created_by: Option<String>,
    pub created_at: Option<String>,
}

/// `GET /api/v1/files/{id}/versions`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Versions {
    pub versions: Vec<FileVersion>,
    pub total: u64,
}

/// `POST /api/v1/uploads` body.
#[derive(Clone, Debug, Default, Serialize)]
pub struct NewUploadSession {
    pub share_id: String,
    pub file_name: String,
    pub file_size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub folder_id: Option<String>,
    /// Power of two, at least 64 KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum_sha256: Option<String>,
    /// Store the upload as a new version of this file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replace_file_id: Option<String>,
}

/// `POST /api/v1/uploads` response.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct UploadSession {
    pub session_id: String,
    pub chunk_size: u64,
    pub total_chunks: u64,
    pub expires_at: Option<String>,
    pub status: Option<String>,
}

/// `GET /api/v1/uploads/{id}`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct UploadStatus {
    pub session_id: String,
    pub status: Option<String>,
    pub chunk_size: u64,
    pub total_chunks: u64,
    pub received_chunks: Vec<u64>,
    pub missing_chunks: Vec<u64>,
    pub bytes_received: u64,
    pub expires_at: Option<String>,
    pub file_id: Option<String>,
}

/// `POST /api/v1/uploads/{id}/complete`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Completed {
    pub file_id: String,
    pub file: Option<RemoteFile>,
}

/// External link object.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Link {
    pub id: String,
    pub tenant_id: Option<String>,
    pub share_id: String,
    pub resource_type: String,
    pub resource_id: String,
    pub link_type: String,
    pub short_code: Option<String>,
    /// `{base}/share/{token}`: whoever has it can open the link (with the password).
    pub url: Option<String>,
    pub short_url: Option<String>,
    /// `active`, `expired`, `revoked` or `disabled`.
    pub status: Option<String>,
    pub password_required: bool,
    pub max_downloads: Option<u64>,
    pub download_count: u64,
    pub max_views: Option<u64>,
    pub view_count: u64,
    pub allowed_ips: Option<Vec<String>>,
    pub allowed_emails: Option<Vec<String>>,
    pub require_email: bool,
    pub custom_name: Option<String>,
    pub custom_message: Option<String>,
    pub created_by: Option<String>,
    pub created_at: Option<String>,
    pub expires_at: Option<String>,
}

/// The changeable options of a link (create and `PATCH`). Absent fields are not sent.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LinkOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_downloads: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_views: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_ips: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_emails: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_email: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_folder_id: Option<String>,
}

/// `POST /api/v1/external/links` body.
#[derive(Clone, Debug, Serialize)]
pub struct NewLink {
    /// `file`, `folder` or `share`.
    pub resource_type: String,
    pub resource_id: String,
    pub share_id: String,
    /// `VIEW`, `DOWNLOAD` or `UPLOAD`.
    pub link_type: String,
    #[serde(flatten)]
    pub options: LinkOptions,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct LinksPage {
    pub links: Vec<Link>,
    pub total: u64,
}

/// A position in a share's change log. Opaque: stored and sent back verbatim (the server
/// currently sends a JSON number; a string is accepted too).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursor(pub String);

impl<'de> Deserialize<'de> for Cursor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Cursor, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Cursor(s)),
            Value::Number(n) => Ok(Cursor(n.to_string())),
            Value::Null => Ok(Cursor::default()),
            other => Err(serde::de::Error::custom(format!(
                "cursor must be a number or string, got {other}"
            ))),
        }
    }
}

impl Serialize for Cursor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// One change-log entry.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Change {
    pub id: String,
    pub share_id: Option<String>,
    /// `file`, `folder` or `share`.
    pub resource_type: String,
    pub resource_id: String,
    /// `created`, `updated`, `deleted`, `moved` or `renamed`.
    pub change_type: String,
    pub changed_by: Option<String>,
    pub changed_at: Option<String>,
    pub old_path: Option<String>,
    pub new_path: Option<String>,
    pub version_id: Option<String>,
    pub metadata: Value,
}

/// `GET /api/v1/sync/changes`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Changes {
    pub changes: Vec<Change>,
    /// Send this back to get what follows.
    pub cursor: Cursor,
    pub has_more: bool,
    pub share_id: Option<String>,
}

/// `GET /api/v1/sync/status`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct SyncStatus {
    pub cursor_position: Cursor,
    pub last_sync_at: Option<String>,
    pub pending_changes: u64,
    pub has_conflicts: bool,
}

/// `POST /api/v1/sync/cursor`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct CursorAck {
    pub cursor_position: Cursor,
    pub last_sync_at: Option<String>,
}

/// `POST /api/v1/auth/token` (refresh grant) response.
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// Where a new file or folder goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub share_id: String,
    /// `None` = share root.
    pub folder_id: Option<String>,
    pub name: String,
}

impl Destination {
    pub fn new(
        share_id: impl Into<String>,
        folder_id: Option<&str>,
        name: impl Into<String>,
    ) -> Destination {
        Destination {
            share_id: share_id.into(),
            folder_id: folder_id.map(str::to_string),
            name: name.into(),
        }
    }
}

/// How a conflict helper placed something.
#[derive(Clone, Debug, PartialEq)]
pub enum Placed<T> {
    /// Newly created.
    Created(T),
    /// It already existed with the same content (or, for folders, the same name).
    Adopted(T),
    /// It existed with other content; ours is now its newest version.
    Replaced(T),
}

impl<T> Placed<T> {
    pub fn get(&self) -> &T {
        match self {
            Placed::Created(t) | Placed::Adopted(t) | Placed::Replaced(t) => t,
        }
    }
    pub fn into_inner(self) -> T {
        match self {
            Placed::Created(t) | Placed::Adopted(t) | Placed::Replaced(t) => t,
        }
    }
}

impl Serialize for Secret {
    /// Only request bodies serialize secrets (a link password); logs use `Debug`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.expose())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn responses_tolerate_extra_and_missing_fields() {
        let f: RemoteFile = serde_json::from_value(json!({
            "id": "fil_1", "name": "a.txt", "share_id": "shr_1", "folder_id": null, "size": 3,
            "checksum_sha256": "ab", "version": 2, "brand_new_field": {"x": 1}
        }))
        .unwrap();
        assert_eq!(
            (f.id.as_str(), f.size, f.version, f.folder_id),
            ("fil_1", 3, 2, None)
        );
        let c: Children = serde_json::from_value(json!({
            "items": [{"id": "fld_1", "name": "A", "type": "folder"},
                      {"id": "fil_1", "name": "A", "type": "file", "size": 4},
                      {"id": "x_1", "name": "A", "type": "shortcut"}],
            "path": "/", "total": 3
        }))
        .unwrap();
        assert_eq!(c.find("A", ItemKind::Folder).unwrap().id, "fld_1");
        assert_eq!(c.find("A", ItemKind::File).unwrap().id, "fil_1");
        assert_eq!(c.items[2].kind, ItemKind::Other);
        assert!(
            c.find("a", ItemKind::File).is_none(),
            "names are case-sensitive"
        );
    }

    #[test]
    fn cursor_is_opaque() {
        let ch: Changes =
            serde_json::from_value(json!({"changes": [], "cursor": 1045000, "has_more": true}))
                .unwrap();
        assert_eq!(ch.cursor, Cursor("1045000".into()));
        let ch: Changes = serde_json::from_value(json!({"changes": [], "cursor": "abc"})).unwrap();
        assert_eq!(ch.cursor.0, "abc");
        assert_eq!(
            serde_json::to_value(Cursor("7".into())).unwrap(),
            json!("7")
        );
    }

    #[test]
    fn requests_skip_absent_fields() {
        let s = NewUploadSession {
            share_id: "s".into(),
            file_name: "f".into(),
            file_size: 1,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({"share_id": "s", "file_name": "f", "file_size": 1})
        );
        let l = NewLink {
            resource_type: "folder".into(),
            resource_id: "fld_1".into(),
            share_id: "shr_1".into(),
            link_type: "DOWNLOAD".into(),
            options: LinkOptions {
                password: Some("hunter2".into()),
                expires_in_days: Some(14),
                ..Default::default()
            },
        };
        let v = serde_json::to_value(&l).unwrap();
        assert_eq!(v["password"], "hunter2", "the body carries the password");
        assert_eq!(v["expires_in_days"], 14);
        assert!(v.get("max_views").is_none());
        assert!(!format!("{l:?}").contains("hunter2"), "Debug does not");
    }
}
