//! SQL fragments shared by the store's tables. A leaf below `model` (entries, journal)
//! and `links` (the links table), so that neither has to import the other for them:
//! `model` calls into `links` when an effect moves or removes linked paths, never back.

/// Prefix match for a path and its descendants in SQL (`path = ?` or `path LIKE '?/%'`
/// with LIKE's wildcards escaped).
pub(super) fn like_children(path: &str) -> String {
    let escaped = path
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("{escaped}/%")
}
