//! The calls the change-log follower needs beyond reading the log: registering the
//! daemon's sync device (`POST /api/v1/sync/devices`) and the repairs it makes toward
//! the local root without sending bytes: restoring a trashed folder (`PATCH … {"restore":
//! true}`; files use [`Client::restore_file`]) and putting a moved or renamed one back (one `PATCH` for a file, rename and/or
//! move for a folder).

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::call::Call;
use super::{Client, Error, Folder, RemoteFile, seg, validate_name};

/// `POST /api/v1/sync/devices` body.
#[derive(Clone, Debug, Serialize)]
pub struct NewDevice {
    pub device_id: String,
    pub device_name: String,
    pub platform: String,
    pub client_version: String,
}

/// A registered device as the server shows it (fields beyond the id are not documented).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Device {
    pub device_id: String,
    pub last_seen_at: Option<String>,
}

impl Client {
    /// `POST /api/v1/sync/devices` (201 new, the server may answer 200 for a known id).
    pub async fn register_device(&self, device: &NewDevice) -> Result<Device, Error> {
        let call = Call::new(Method::POST, "/api/v1/sync/devices".into()).json(device);
        self.call_json(call).await
    }

    /// `PATCH /api/v1/folders/{id}` `{"restore": true}`: the folder and what its delete
    /// took with it.
    pub async fn restore_folder(&self, folder_id: &str) -> Result<Folder, Error> {
        let call = Call::new(Method::PATCH, format!("/api/v1/folders/{}", seg(folder_id)))
            .json(&json!({ "restore": true }));
        self.call_json(call).await
    }

    /// Puts a file at `name` in `folder_id` (`None` = share root) in one
    /// `PATCH /api/v1/files/{id}` `{"name", "folder_id"}`.
    pub async fn place_file(
        &self,
        file_id: &str,
        folder_id: Option<&str>,
        name: &str,
    ) -> Result<RemoteFile, Error> {
        validate_name(name)?;
        let call = Call::new(Method::PATCH, format!("/api/v1/files/{}", seg(file_id)))
            .json(&json!({ "name": name, "folder_id": folder_id }));
        self.call_json(call).await
    }
}
