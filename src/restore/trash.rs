//! `restore --from-trash`: files whose content is only in ScaiDrive's trash.
//!
//! The API serves no content of a trashed item (410, "restore it first"), so such a file
//! is taken out of the trash where it was (`PATCH … {"restore": true}`, 2 units: the
//! top-most trashed folder above it first, which brings back what its delete took, then
//! the file itself if it was trashed on its own), downloaded like any other, and put back
//! (`DELETE`, soft, 2 units), deepest first, so the trash holds the same items as before.
//! Opt-in: for a moment the items are live again, and the share's change log shows the
//! round trip.
//!
//! Crash rule: the items about to come out of the trash are written to
//! `DIR/.scaidrive-restore/untrashed` before the first request; a run that finds that list
//! (an earlier one was killed between taking out and putting back) puts them back after
//! its own downloads. The list goes only when every item is back in the trash.

use std::collections::BTreeSet;
use std::path::Path;

use super::timeline::{Kind, Timeline};
use super::{RestoreError, io};
use crate::remote::Client;

/// Units of taking one item out of the trash and of putting it back.
pub const UNTRASH_UNITS: u64 = 2;
pub const RETRASH_UNITS: u64 = 2;
/// The list of items an unfinished run took out of the trash, in the work directory.
pub const JOURNAL: &str = "untrashed";

/// One trashed item to take out: a folder (with what its delete took) or a file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Untrash {
    /// Depth below the share root: parents come out first and go back last.
    pub depth: usize,
    pub id: String,
    pub folder: bool,
}

/// The trashed items (top-most first) that must come out of the trash for file `id` to be
/// readable as it is now, or why it cannot: every item on its path that was deleted itself
/// (a folder's delete hides its subtree without a row per descendant).
pub fn chain(now: &Timeline, id: &str) -> Result<Vec<Untrash>, String> {
    let mut path = Vec::new();
    let mut cur = Some(id.to_string());
    while let Some(i) = cur {
        let Some(it) = now.get(&i) else {
            return Err(format!(
                "the change log does not show where {i} (above it) is now"
            ));
        };
        if it.gone {
            return Err(format!(
                "{} permanently deleted (or moved out of the share)",
                if i == id {
                    "it was"
                } else {
                    "a folder above it was"
                }
            ));
        }
        path.push((i, it.kind, it.live));
        cur = it.parent.clone();
        if path.len() > 10_000 {
            return Err("the change log's folders form a cycle".into());
        }
    }
    let depth = path.len();
    Ok(path
        .into_iter()
        .enumerate()
        .filter(|(_, (_, _, live))| !live)
        .map(|(up, (id, kind, _))| Untrash {
            depth: depth - up,
            id,
            folder: kind == Kind::Folder,
        })
        .rev()
        .collect())
}

fn journal_line(u: &Untrash) -> String {
    format!(
        "{} {} {}",
        u.depth,
        if u.folder { "folder" } else { "file" },
        u.id
    )
}

fn parse_journal(text: &str) -> Vec<Untrash> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let depth = f.next()?.parse().ok()?;
            let folder = f.next()? == "folder";
            let id = f.next()?.to_string();
            Some(Untrash { depth, id, folder })
        })
        .collect()
}

/// What taking items out of the trash did.
#[derive(Debug, Default)]
pub struct TakenOut {
    /// Items that could not come out, with why (their files are not restorable).
    pub refused: Vec<(String, String)>,
    /// Every item to put back when the downloads are done (this run's and an earlier,
    /// killed run's).
    pub to_put_back: BTreeSet<Untrash>,
}

/// Takes `items` (parents first) out of the trash, after recording them in the journal.
pub async fn take_out(
    client: &Client,
    items: &BTreeSet<Untrash>,
    work: &Path,
) -> Result<TakenOut, RestoreError> {
    let journal = work.join(JOURNAL);
    let mut out = TakenOut::default();
    if let Ok(text) = tokio::fs::read_to_string(&journal).await {
        out.to_put_back.extend(parse_journal(&text));
    }
    if items.is_empty() {
        return Ok(out);
    }
    out.to_put_back.extend(items.iter().cloned());
    let text: String = out
        .to_put_back
        .iter()
        .map(|u| journal_line(u) + "\n")
        .collect();
    tokio::fs::write(&journal, text)
        .await
        .map_err(io(&journal))?;
    for u in items {
        let done = if u.folder {
            client.restore_folder(&u.id).await.map(|_| ())
        } else {
            client.untrash_file(&u.id).await.map(|_| ())
        };
        if let Err(e) = done {
            tracing::debug!("taking {} out of the trash: {e}", u.id);
            out.refused.push((u.id.clone(), e.to_string()));
        }
    }
    Ok(out)
}

/// Puts the items back in the trash, deepest first. Returns what could not go back.
/// The journal goes when all are back (an item already in the trash counts as back).
pub async fn put_back(
    client: &Client,
    items: &BTreeSet<Untrash>,
    work: &Path,
) -> Vec<(String, String)> {
    let mut failed = Vec::new();
    for u in items.iter().rev() {
        let done = if u.folder {
            client.delete_folder(&u.id, false).await
        } else {
            client.delete_file(&u.id, false).await
        };
        match done {
            Ok(()) => {}
            Err(e) if e.status().is_some_and(|s| s.as_u16() == 410) => {}
            Err(e) => failed.push((u.id.clone(), e.to_string())),
        }
    }
    if failed.is_empty() {
        let _ = tokio::fs::remove_file(work.join(JOURNAL)).await;
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::Change;
    use serde_json::json;

    fn row(kind: &str, id: &str, ct: &str, meta: serde_json::Value) -> Change {
        Change {
            resource_type: kind.into(),
            resource_id: id.into(),
            change_type: ct.into(),
            changed_at: Some("2026-01-01T00:00:00Z".into()),
            metadata: meta,
            ..Change::default()
        }
    }

    #[test]
    fn the_chain_takes_out_every_item_deleted_itself_parents_first() {
        let mut t = Timeline::new();
        for c in [
            row(
                "folder",
                "m",
                "created",
                json!({"name": "m", "parent_id": null}),
            ),
            row(
                "folder",
                "d",
                "created",
                json!({"name": "d", "parent_id": "m"}),
            ),
            row(
                "folder",
                "e",
                "created",
                json!({"name": "e", "parent_id": "d"}),
            ),
            row(
                "file",
                "f",
                "created",
                json!({"name": "f", "parent_id": "e", "version": 1}),
            ),
            row(
                "file",
                "g",
                "created",
                json!({"name": "g", "parent_id": "e", "version": 1}),
            ),
            row(
                "file",
                "h",
                "created",
                json!({"name": "h", "parent_id": "m", "version": 1}),
            ),
            // f on its own, then d with what is left below it.
            row("file", "f", "deleted", json!({})),
            row("folder", "d", "deleted", json!({})),
            row("file", "h", "deleted", json!({"permanent": true})),
        ] {
            t.apply(&c);
        }
        let ids = |r: Result<Vec<Untrash>, String>| {
            r.unwrap()
                .into_iter()
                .map(|u| (u.id, u.depth, u.folder))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(chain(&t, "f")),
            vec![("d".into(), 2, true), ("f".into(), 4, false)]
        );
        assert_eq!(ids(chain(&t, "g")), vec![("d".into(), 2, true)]);
        assert!(chain(&t, "h").unwrap_err().contains("permanently deleted"));
        // Parents come out first and go back last in a set ordered by depth.
        let set: BTreeSet<Untrash> = chain(&t, "f").unwrap().into_iter().collect();
        assert_eq!(set.iter().next().unwrap().id, "d");
        let text: String = set.iter().map(|u| journal_line(u) + "\n").collect();
        assert_eq!(parse_journal(&text), set.into_iter().collect::<Vec<_>>());
    }
}
