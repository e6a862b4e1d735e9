//! The three calls that put content the server already holds at a name without sending
//! its bytes (issue 19, item 5): a server-side copy, a version restore and a restore from
//! the trash. Each costs a write (2 units) where an upload costs 5 (multipart) or at least
//! 9 (a session: create, one chunk, complete), and each answers with the file object, so
//! the caller checks the content's SHA-256 without another call.
//!
//! A retried copy or restore that the server had applied answers 409 (the name is taken):
//! the caller treats that like an upload's 409 (adopt what is there if it is ours).

use reqwest::Method;
use serde_json::json;

use super::call::Call;
use super::{Client, Destination, Error, RemoteFile, seg, validate_name};

impl Client {
    /// `POST /api/v1/files/{id}/copy`: a new file at `dest` with the content of
    /// `source_id`. The body names the target folder (or the share, for its root) and the
    /// new name; the docs leave fields beyond the target ids undocumented, so the caller
    /// checks the answer's name and folder.
    pub async fn copy_file(
        &self,
        source_id: &str,
        dest: &Destination,
    ) -> Result<RemoteFile, Error> {
        validate_name(&dest.name)?;
        let body = match &dest.folder_id {
            Some(folder) => json!({ "target_folder_id": folder, "name": dest.name }),
            None => json!({ "target_share_id": dest.share_id, "name": dest.name }),
        };
        let call = Call::new(
            Method::POST,
            format!("/api/v1/files/{}/copy", seg(source_id)),
        )
        .json(&body);
        self.call_json(call).await
    }

    /// `POST /api/v1/files/{id}/versions/{n}/restore`: a new version of the file whose
    /// content is version `version`'s.
    pub async fn restore_version(&self, file_id: &str, version: i64) -> Result<RemoteFile, Error> {
        let call = Call::new(
            Method::POST,
            format!("/api/v1/files/{}/versions/{version}/restore", seg(file_id)),
        );
        self.call_json(call).await
    }

    /// `PATCH /api/v1/files/{id}` `{"restore": true}`: takes a soft-deleted file out of
    /// the trash where it was (its folder must be live).
    pub async fn untrash_file(&self, file_id: &str) -> Result<RemoteFile, Error> {
        let call = Call::new(Method::PATCH, format!("/api/v1/files/{}", seg(file_id)))
            .json(&json!({ "restore": true }));
        self.call_json(call).await
    }

    /// `PATCH /api/v1/files/{id}` `{"restore": true, "folder_id", "name"}`: takes a
    /// soft-deleted file out of the trash into `folder_id` (`None` = share root) under
    /// `name` (its folder may have been created anew since it was trashed).
    pub async fn restore_file(
        &self,
        file_id: &str,
        folder_id: Option<&str>,
        name: &str,
    ) -> Result<RemoteFile, Error> {
        validate_name(name)?;
        let call = Call::new(Method::PATCH, format!("/api/v1/files/{}", seg(file_id)))
            .json(&json!({ "restore": true, "folder_id": folder_id, "name": name }));
        self.call_json(call).await
    }
}
