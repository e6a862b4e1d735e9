//! `GET /v1/events?mirror=`: the event bus as newline-delimited JSON, one
//! [`crate::events::Event`] a line, for as long as the connection stays open (`curl -N
//! --unix-socket SOCKET http://x/v1/events` works). Each connection has its own bounded
//! receiver: a reader that falls [`crate::events::CAPACITY`] events behind loses the
//! oldest and gets a `{"event":"dropped","count":N}` line in their place; the daemon
//! never waits for it. The stream ends when the daemon stops.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::sync::broadcast::error::RecvError;

use super::protocol::MirrorQuery;
use super::{ControlState, select};
use crate::events::{Event, EventKind, now_ms};

/// One line of the stream (the wire type of `scaidrivectl events --json`).
pub type EventLine = Event;

pub(super) async fn stream(
    State(state): State<ControlState>,
    Query(q): Query<MirrorQuery>,
) -> Response {
    // An unknown mirror is a 404 naming it, like every other route.
    if let Err(r) = select(&state, &q.mirror) {
        return *r;
    }
    let rx = state.events.subscribe();
    let only = q.mirror.clone();
    let stop = state.shutdown.clone();
    let lines = futures_util::stream::unfold(rx, move |mut rx| {
        let only = only.clone();
        async move {
            loop {
                let ev: Arc<Event> = match rx.recv().await {
                    Ok(ev) => ev,
                    Err(RecvError::Lagged(n)) => Arc::new(Event {
                        time_ms: now_ms(),
                        mirror: String::new(),
                        kind: EventKind::Dropped { count: n },
                    }),
                    Err(RecvError::Closed) => return None,
                };
                let wanted = match (&only, &ev.kind) {
                    (_, EventKind::Dropped { .. }) | (None, _) => true,
                    (Some(m), _) => &ev.mirror == m,
                };
                if wanted {
                    let mut line = serde_json::to_vec(&*ev).unwrap_or_default();
                    line.push(b'\n');
                    return Some((Ok::<_, std::io::Error>(bytes::Bytes::from(line)), rx));
                }
            }
        }
    })
    .take_until(stop.cancelled_owned());
    (
        [
            ("content-type", "application/x-ndjson"),
            ("cache-control", "no-cache"),
        ],
        axum::body::Body::from_stream(lines),
    )
        .into_response()
}
