//! The daemon's event bus: what the mirrors and the link keeper did, one [`Event`] per
//! thing a script may want to react to (a file went up, a mirror paused), for
//! `scaidrivectl events` and `GET /v1/events` (see `control::events`).
//!
//! A `tokio::sync::broadcast` channel of fixed capacity: publishing never blocks and never
//! waits for a reader; a reader that falls more than [`CAPACITY`] events behind loses the
//! oldest ones and is told how many (the stream then carries a `dropped` line). Nothing is
//! kept for readers that are not connected. Events carry paths and reasons, never secrets
//! (a link event names the link's id and path, not its URL or password).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// Events held for the slowest reader before it loses the oldest.
pub const CAPACITY: usize = 1024;

/// One thing that happened, as a line of the event stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// The mirror it happened in (empty for daemon-wide events such as `dropped`).
    #[serde(default)]
    pub mirror: String,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened; `event` in the JSON line names the variant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// A new file went up.
    Uploaded { path: String, bytes: u64 },
    /// New content of a file went up as a new version.
    NewVersion { path: String, bytes: u64 },
    /// A folder was created remotely.
    FolderCreated { path: String },
    /// A file or folder was moved or renamed remotely.
    Moved { from: String, to: String },
    /// A file or folder was deleted remotely (to the trash, or forgotten in `keep` mode).
    Deleted { path: String },
    /// `verify --repair` found the remote different from what the mirror holds; the next
    /// pass uploads it again.
    DriftRepaired { path: String },
    /// An item failed (it is retried with its own backoff unless `permanent`).
    Failed {
        path: String,
        reason: String,
        permanent: bool,
    },
    /// The mirror stopped uploading, and why.
    Paused { reason: String },
    /// The mirror uploads again.
    Resumed,
    /// A sharing link was created (`renewed`: it replaced an expired or spent one).
    LinkCreated {
        path: String,
        link_id: String,
        renewed: bool,
    },
    /// The mirror is idle and in sync.
    InSync,
    /// This reader was too slow: `count` events were lost before this line.
    Dropped { count: u64 },
}

impl EventKind {
    /// The wire name (`uploaded`, `new_version`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Uploaded { .. } => "uploaded",
            EventKind::NewVersion { .. } => "new_version",
            EventKind::FolderCreated { .. } => "folder_created",
            EventKind::Moved { .. } => "moved",
            EventKind::Deleted { .. } => "deleted",
            EventKind::DriftRepaired { .. } => "drift_repaired",
            EventKind::Failed { .. } => "failed",
            EventKind::Paused { .. } => "paused",
            EventKind::Resumed => "resumed",
            EventKind::LinkCreated { .. } => "link_created",
            EventKind::InSync => "in_sync",
            EventKind::Dropped { .. } => "dropped",
        }
    }
}

/// The sending side, cloned into every mirror; cheap to clone.
#[derive(Clone, Debug)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<Event>>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new(CAPACITY)
    }
}

impl EventBus {
    pub fn new(capacity: usize) -> EventBus {
        EventBus {
            tx: broadcast::channel(capacity.max(1)).0,
        }
    }

    /// Publishes without waiting; with no reader connected the event is dropped at once.
    pub fn publish(&self, mirror: &str, kind: EventKind) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let _ = self.tx.send(Arc::new(Event {
            time_ms: now_ms(),
            mirror: mirror.to_string(),
            kind,
        }));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_are_flat_and_tagged() {
        let e = Event {
            time_ms: 1,
            mirror: "docs".into(),
            kind: EventKind::Moved {
                from: "a".into(),
                to: "b".into(),
            },
        };
        let s = serde_json::to_string(&e).unwrap();
        assert_eq!(
            s,
            r#"{"time_ms":1,"mirror":"docs","event":"moved","from":"a","to":"b"}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&s).unwrap(), e);
        let r = serde_json::to_string(&EventKind::Resumed).unwrap();
        assert_eq!(r, r#"{"event":"resumed"}"#);
    }

    #[tokio::test]
    async fn a_slow_reader_is_told_what_it_lost() {
        let bus = EventBus::new(4);
        bus.publish("m", EventKind::InSync); // nobody listens: gone
        let mut rx = bus.subscribe();
        for i in 0..10 {
            bus.publish(
                "m",
                EventKind::Deleted {
                    path: i.to_string(),
                },
            );
        }
        assert!(matches!(
            rx.recv().await,
            Err(broadcast::error::RecvError::Lagged(6))
        ));
        let next = rx.recv().await.unwrap();
        assert_eq!(next.kind, EventKind::Deleted { path: "6".into() });
    }
}
