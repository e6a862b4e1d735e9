//! The debounce queue between the watcher and the planner. Owns the timing rules (a path is
//! settled after a quiet period, but never later than a max delay after its first pending
//! event), rename pairing and coalescing, the order in which a batch of settled paths is handed
//! on (parents first, creations and renames before removals), and the bound on pending work
//! (too many distinct paths collapse into one rescan). Pure logic: time is passed in, nothing
//! here sleeps, so the engine sleeps until [`Queue::next_deadline`] and tests drive a fake clock.
//! The delete gate after the planner ([`gate`]) follows the same rules.

pub mod gate;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use crate::watch::{RelPath, WatchEvent};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// A path settles this long after its last event.
    pub quiet: Duration,
    /// ... but no later than this after its first pending event (a file that is written
    /// continuously still gets mirrored).
    pub max_delay: Duration,
    /// Beyond this many distinct pending paths, everything collapses into one rescan.
    pub max_pending: usize,
    /// The quiet period of a group that holds nothing but paired kernel renames (`mv a b`).
    /// Such a move is atomic: there is no content to wait out, so it settles after this much
    /// shorter period (the daemon uses the smaller of this and `quiet`). Any other event in
    /// the group (a write, a create before the rename, as in an editor's atomic save) puts the
    /// group back on the full quiet period.
    pub rename_quiet: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            quiet: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
            max_pending: 65_536,
            rename_quiet: Duration::from_millis(250),
        }
    }
}

/// One unit of work handed to the planner. Like watch events these are hints: the planner
/// stats the paths (a `Changed` path may be gone again, a `Removed` one may be back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Exists as far as the last event said (created, written, or removed-and-recreated).
    Changed(RelPath),
    /// Gone as far as the last event said.
    Removed(RelPath),
    /// Moved inside the root; both ends settled together. If `from` was re-created after
    /// the move, a separate `Changed(from)` follows this item in the same batch.
    Renamed { from: RelPath, to: RelPath },
    /// Pending paths were discarded; run a full scan.
    Rescan,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    first: Instant,
    last: Instant,
}

impl Window {
    fn new(now: Instant) -> Self {
        Window {
            first: now,
            last: now,
        }
    }

    fn touch(&mut self, now: Instant) {
        self.last = self.last.max(now);
        self.first = self.first.min(now);
    }

    fn merge(self, other: Window) -> Window {
        Window {
            first: self.first.min(other.first),
            last: self.last.max(other.last),
        }
    }

    fn deadline(&self, cfg: &QueueConfig) -> Instant {
        self.deadline_after(cfg.quiet, cfg)
    }

    fn deadline_after(&self, quiet: Duration, cfg: &QueueConfig) -> Instant {
        (self.last + quiet).min(self.first + cfg.max_delay)
    }
}

/// Paths that settle together: one path on its own, or the paths linked by renames (so a
/// move's source and destination, and anything later written under the destination, are
/// handed on in one batch).
#[derive(Debug)]
struct Group {
    window: Window,
    /// Last known presence per path: `true` = exists.
    state: BTreeMap<RelPath, bool>,
    /// Compressed moves (`a→b, b→c` is kept as `a→c`).
    moves: Vec<(RelPath, RelPath)>,
    /// Nothing but kernel renames (and their ends) so far: once it holds a paired move, the
    /// group settles after `rename_quiet`. A lone end (a move out of or into the root) waits
    /// the full quiet period like a removal or creation.
    renames_only: bool,
}

impl Group {
    fn new(now: Instant) -> Self {
        Group {
            window: Window::new(now),
            state: BTreeMap::new(),
            moves: Vec::new(),
            renames_only: true,
        }
    }

    fn deadline(&self, cfg: &QueueConfig) -> Instant {
        let quiet = if self.renames_only && !self.moves.is_empty() {
            cfg.rename_quiet.min(cfg.quiet)
        } else {
            cfg.quiet
        };
        self.window.deadline_after(quiet, cfg)
    }

    fn rename(&mut self, from: &RelPath, to: &RelPath) {
        // A move onto the destination of an earlier move overwrites that file: the earlier
        // move no longer describes anything on disk (its source stays recorded as gone).
        let chained = self.moves.iter().position(|(_, t)| t == from);
        let origin = match chained {
            Some(i) => Some(self.moves.remove(i).0),
            // A name that was already moved away and is now moved again held a file born
            // after the first move: the store never knew it, so its move is no hint.
            None if self.moves.iter().any(|(f, _)| f == from) => None,
            None => Some(from.clone()),
        };
        self.moves.retain(|(_, t)| t != to);
        if let Some(origin) = origin
            && &origin != to
        {
            self.moves.push((origin, to.clone()));
        }
        self.state.insert(from.clone(), false);
        self.state.insert(to.clone(), true);
    }

    fn is_move_target(&self, p: &RelPath) -> bool {
        self.moves.iter().any(|(_, t)| t == p)
    }

    fn into_items(self, out: &mut Vec<Settled>) {
        for (from, to) in &self.moves {
            out.push(Settled::Renamed {
                from: from.clone(),
                to: to.clone(),
            });
        }
        for (path, present) in self.state {
            let is_target = self.moves.iter().any(|(_, t)| *t == path);
            let is_source = self.moves.iter().any(|(f, _)| *f == path);
            if is_target || (is_source && !present) {
                continue;
            }
            out.push(if present {
                Settled::Changed(path)
            } else {
                Settled::Removed(path)
            });
        }
    }
}

/// The debounce queue for one mirror.
#[derive(Debug)]
pub struct Queue {
    cfg: QueueConfig,
    groups: HashMap<u64, Group>,
    index: HashMap<RelPath, u64>,
    /// (deadline, group id): the earliest entry is the next group to settle.
    deadlines: BTreeSet<(Instant, u64)>,
    next_id: u64,
    /// A pending full rescan; while set, path events only extend its window.
    rescan: Option<Window>,
}

impl Queue {
    pub fn new(cfg: QueueConfig) -> Self {
        Queue {
            cfg: QueueConfig {
                max_pending: cfg.max_pending.max(1),
                ..cfg
            },
            groups: HashMap::new(),
            index: HashMap::new(),
            deadlines: BTreeSet::new(),
            next_id: 0,
            rescan: None,
        }
    }

    pub fn config(&self) -> &QueueConfig {
        &self.cfg
    }

    /// Feeds one watcher event. Returns `false` for events that are not the queue's business
    /// (`WatchEvent::Error`), which the caller logs.
    pub fn push(&mut self, event: WatchEvent, now: Instant) -> bool {
        match event {
            WatchEvent::Changed(p) => self.changed(p, now),
            WatchEvent::Removed(p) => self.removed(p, now),
            WatchEvent::MoveEnd { path, present } => self.move_end(path, present, now),
            WatchEvent::Renamed { from, to } => self.renamed(from, to, now),
            WatchEvent::Rescan { .. } => self.rescan(now),
            WatchEvent::Error(_) => return false,
        }
        true
    }

    pub fn changed(&mut self, path: RelPath, now: Instant) {
        self.presence(path, true, now, false);
    }

    pub fn removed(&mut self, path: RelPath, now: Instant) {
        self.presence(path, false, now, false);
    }

    /// One end of a kernel rename: a removal or change like any other, except that it does
    /// not cost its group the short rename quiet period.
    pub fn move_end(&mut self, path: RelPath, present: bool, now: Instant) {
        self.presence(path, present, now, true);
    }

    pub fn renamed(&mut self, from: RelPath, to: RelPath, now: Instant) {
        if self.absorbed_by_rescan(now) {
            return;
        }
        if from.is_root() || to.is_root() {
            return self.rescan(now);
        }
        if from == to {
            return self.changed(to, now);
        }
        let id = match (self.index.get(&from).copied(), self.index.get(&to).copied()) {
            (Some(a), Some(b)) if a != b => self.merge(a, b),
            (Some(a), _) | (None, Some(a)) => a,
            (None, None) => self.new_group(now),
        };
        self.update(id, now, |g| g.rename(&from, &to));
        self.index.insert(from, id);
        self.index.insert(to, id);
        self.check_bound(now);
    }

    /// Discards pending paths; a single `Settled::Rescan` comes out once events have been
    /// quiet for the quiet period (or after the max delay), so a storm that overflowed the
    /// channel is scanned once after it, not many times during it.
    pub fn rescan(&mut self, now: Instant) {
        self.groups.clear();
        self.index.clear();
        self.deadlines.clear();
        match &mut self.rescan {
            Some(w) => w.touch(now),
            None => self.rescan = Some(Window::new(now)),
        }
    }

    /// Everything that has settled by `now`, in the order the planner should handle it:
    /// creations/changes and renames first, parents before children, then removals (also
    /// parents first, so a removed directory is seen before its contents).
    pub fn drain_ready(&mut self, now: Instant) -> Vec<Settled> {
        if let Some(w) = self.rescan {
            if w.deadline(&self.cfg) <= now {
                self.rescan = None;
                return vec![Settled::Rescan];
            }
            return Vec::new();
        }
        let mut out = Vec::new();
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            let group = self.groups.remove(&id).expect("deadline without group");
            for p in group.state.keys() {
                self.index.remove(p);
            }
            group.into_items(&mut out);
        }
        sort_batch(&mut out);
        out
    }

    /// When the next path (or the pending rescan) settles; `None` when nothing is pending.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.rescan {
            Some(w) => Some(w.deadline(&self.cfg)),
            None => self.deadlines.first().map(|&(d, _)| d),
        }
    }

    /// Distinct pending paths, plus one for a pending rescan.
    pub fn len(&self) -> usize {
        self.index.len() + usize::from(self.rescan.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn rescan_pending(&self) -> bool {
        self.rescan.is_some()
    }

    fn presence(&mut self, path: RelPath, present: bool, now: Instant, move_end: bool) {
        if self.absorbed_by_rescan(now) {
            return;
        }
        if path.is_root() {
            // The root's own entry cannot be settled like a file: only a scan can tell
            // whether it is still there.
            return self.rescan(now);
        }
        let id = match self.index.get(&path) {
            Some(&id) => id,
            None => self
                .pending_move_above(&path)
                .unwrap_or_else(|| self.new_group(now)),
        };
        self.update(id, now, |g| {
            g.state.insert(path.clone(), present);
            g.renames_only &= move_end;
        });
        self.index.insert(path, id);
        self.check_bound(now);
    }

    /// A group holding a pending move whose destination is an ancestor of `path`: writes into
    /// a just-renamed directory settle with the rename, so the planner sees the move first.
    fn pending_move_above(&self, path: &RelPath) -> Option<u64> {
        let mut cur = path.parent();
        while let Some(p) = cur {
            if p.is_root() {
                return None;
            }
            if let Some(&id) = self.index.get(&p)
                && self.groups[&id].is_move_target(&p)
            {
                return Some(id);
            }
            cur = p.parent();
        }
        None
    }

    fn absorbed_by_rescan(&mut self, now: Instant) -> bool {
        match &mut self.rescan {
            Some(w) => {
                w.touch(now);
                true
            }
            None => false,
        }
    }

    fn new_group(&mut self, now: Instant) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let g = Group::new(now);
        self.deadlines.insert((g.deadline(&self.cfg), id));
        self.groups.insert(id, g);
        id
    }

    /// Applies `f` to a group and moves its deadline for an event at `now`.
    fn update(&mut self, id: u64, now: Instant, f: impl FnOnce(&mut Group)) {
        let g = self.groups.get_mut(&id).expect("indexed group exists");
        self.deadlines.remove(&(g.deadline(&self.cfg), id));
        f(g);
        g.window.touch(now);
        self.deadlines.insert((g.deadline(&self.cfg), id));
    }

    /// Folds the smaller of two groups into the larger; returns the survivor.
    fn merge(&mut self, a: u64, b: u64) -> u64 {
        let (keep, gone) = if self.groups[&a].state.len() >= self.groups[&b].state.len() {
            (a, b)
        } else {
            (b, a)
        };
        let g = self.groups.remove(&gone).expect("indexed group exists");
        self.deadlines.remove(&(g.deadline(&self.cfg), gone));
        for p in g.state.keys() {
            self.index.insert(p.clone(), keep);
        }
        let k = self.groups.get_mut(&keep).expect("indexed group exists");
        self.deadlines.remove(&(k.deadline(&self.cfg), keep));
        k.window = k.window.merge(g.window);
        k.state.extend(g.state);
        k.moves.extend(g.moves);
        k.renames_only &= g.renames_only;
        self.deadlines.insert((k.deadline(&self.cfg), keep));
        keep
    }

    fn check_bound(&mut self, now: Instant) {
        if self.index.len() > self.cfg.max_pending {
            self.rescan(now);
        }
    }
}

/// Orders one batch. Sort key: (removal?, anchor, after-anchor?, path). A rename is anchored
/// at its destination. A path re-created under a rename's source is anchored just after that
/// rename, so the planner moves the old file before it looks at the new one at the old name.
fn sort_batch(items: &mut [Settled]) {
    let moves: Vec<(RelPath, RelPath)> = items
        .iter()
        .filter_map(|s| match s {
            Settled::Renamed { from, to } => Some((from.clone(), to.clone())),
            _ => None,
        })
        .collect();
    items.sort_by_cached_key(|s| match s {
        Settled::Renamed { to, .. } => (false, to.clone(), false, to.clone()),
        Settled::Changed(p) => match moves.iter().find(|(f, _)| p.is_within(f)) {
            Some((_, to)) => (false, to.clone(), true, p.clone()),
            None => (false, p.clone(), false, p.clone()),
        },
        Settled::Removed(p) => (true, p.clone(), false, p.clone()),
        Settled::Rescan => (false, RelPath::root(), false, RelPath::root()),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }
    fn ch(s: &str) -> WatchEvent {
        WatchEvent::Changed(rp(s))
    }
    fn rm(s: &str) -> WatchEvent {
        WatchEvent::Removed(rp(s))
    }
    fn end(s: &str, present: bool) -> WatchEvent {
        WatchEvent::MoveEnd {
            path: rp(s),
            present,
        }
    }
    fn mv(a: &str, b: &str) -> WatchEvent {
        WatchEvent::Renamed {
            from: rp(a),
            to: rp(b),
        }
    }
    fn rescan() -> WatchEvent {
        WatchEvent::Rescan {
            reason: crate::watch::RescanReason::ChannelFull,
        }
    }
    fn s_ch(s: &str) -> Settled {
        Settled::Changed(rp(s))
    }
    fn s_rm(s: &str) -> Settled {
        Settled::Removed(rp(s))
    }
    fn s_mv(a: &str, b: &str) -> Settled {
        Settled::Renamed {
            from: rp(a),
            to: rp(b),
        }
    }

    enum Step {
        /// An event at this many milliseconds.
        Ev(u64, WatchEvent),
        /// Drain at this many milliseconds and expect exactly these items.
        Drain(u64, Vec<Settled>),
        /// Expect the next deadline at this many milliseconds (None: nothing pending).
        Next(Option<u64>),
        Len(usize),
    }
    use Step::*;

    fn cfg() -> QueueConfig {
        QueueConfig {
            quiet: Duration::from_millis(2_000),
            max_delay: Duration::from_millis(60_000),
            max_pending: 10,
            rename_quiet: Duration::from_millis(250),
        }
    }

    fn run(name: &str, steps: Vec<Step>) {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut q = Queue::new(cfg());
        for (i, step) in steps.into_iter().enumerate() {
            match step {
                Ev(ms, ev) => assert!(q.push(ev, at(ms))),
                Drain(ms, want) => {
                    let got = q.drain_ready(at(ms));
                    assert_eq!(
                        got, want,
                        "{name}: step {i}: drain at {ms} ms; queue: {q:#?}"
                    );
                }
                Next(ms) => assert_eq!(
                    q.next_deadline(),
                    ms.map(at),
                    "{name}: step {i}: next deadline"
                ),
                Len(n) => assert_eq!(q.len(), n, "{name}: step {i}: len"),
            }
        }
    }

    #[test]
    fn debounce_table() {
        let cases: Vec<(&str, Vec<Step>)> = vec![
            (
                "quiet period: settles 2 s after the last event, not before",
                vec![
                    Next(None),
                    Ev(0, ch("a")),
                    Next(Some(2_000)),
                    Drain(1_999, vec![]),
                    Drain(2_000, vec![s_ch("a")]),
                    Next(None),
                    Len(0),
                ],
            ),
            (
                "each event restarts the quiet period",
                vec![
                    Ev(0, ch("a")),
                    Ev(1_500, ch("a")),
                    Next(Some(3_500)),
                    Drain(2_000, vec![]),
                    Drain(3_500, vec![s_ch("a")]),
                ],
            ),
            (
                "continuous writes settle at the max delay",
                (0..=70)
                    .map(|s| Ev(s * 1_000, ch("log")))
                    .take_while(|e| matches!(e, Ev(ms, _) if *ms < 60_000))
                    .chain([
                        Next(Some(60_000)),
                        Drain(59_999, vec![]),
                        Drain(60_000, vec![s_ch("log")]),
                        // The next write starts a fresh window.
                        Ev(60_500, ch("log")),
                        Next(Some(62_500)),
                    ])
                    .collect(),
            ),
            (
                "many events on one path coalesce into one item",
                vec![
                    Ev(0, ch("f")),
                    Ev(10, ch("f")),
                    Ev(20, ch("f")),
                    Len(1),
                    Drain(5_000, vec![s_ch("f")]),
                ],
            ),
            (
                "removed then re-created is one change (the planner makes it a replace)",
                vec![
                    Ev(0, rm("f")),
                    Ev(100, ch("f")),
                    Drain(5_000, vec![s_ch("f")]),
                ],
            ),
            (
                "created then removed is one removal",
                vec![
                    Ev(0, ch("f")),
                    Ev(100, rm("f")),
                    Drain(5_000, vec![s_rm("f")]),
                ],
            ),
            (
                "independent paths settle independently",
                vec![
                    Ev(0, ch("a")),
                    Ev(1_000, ch("b")),
                    Next(Some(2_000)),
                    Drain(2_000, vec![s_ch("a")]),
                    Next(Some(3_000)),
                    Drain(3_000, vec![s_ch("b")]),
                ],
            ),
            (
                "kernel rename (From, To, Both) becomes one pair, settled after 250 ms",
                vec![
                    Ev(0, end("a", false)),
                    Ev(0, end("b", true)),
                    Ev(0, mv("a", "b")),
                    Len(2),
                    Next(Some(250)),
                    Drain(250, vec![s_mv("a", "b")]),
                    Len(0),
                ],
            ),
            (
                "a rename whose ends came as plain events pairs but waits the quiet period",
                vec![
                    Ev(0, rm("a")),
                    Ev(0, ch("b")),
                    Ev(0, mv("a", "b")),
                    Len(2),
                    Drain(300, vec![]),
                    Drain(2_000, vec![s_mv("a", "b")]),
                ],
            ),
            (
                "a move out of the root waits the quiet period like a removal",
                vec![
                    Ev(0, end("a", false)),
                    Next(Some(2_000)),
                    Drain(2_000, vec![s_rm("a")]),
                ],
            ),
            (
                "a move into the root waits the quiet period like a creation",
                vec![
                    Ev(0, end("b", true)),
                    Next(Some(2_000)),
                    Drain(2_000, vec![s_ch("b")]),
                ],
            ),
            (
                "an editor's atomic save with kernel move ends waits the quiet period",
                vec![
                    Ev(0, ch("a.tmp")),
                    Ev(10, end("a.tmp", false)),
                    Ev(10, end("a", true)),
                    Ev(10, mv("a.tmp", "a")),
                    Next(Some(2_010)),
                    Drain(2_010, vec![s_mv("a.tmp", "a")]),
                ],
            ),
            (
                "a rename over a file written just before waits the quiet period",
                vec![
                    Ev(0, ch("b")),
                    Ev(10, end("a", false)),
                    Ev(10, end("b", true)),
                    Ev(10, mv("a", "b")),
                    Next(Some(2_010)),
                ],
            ),
            (
                "renames inside a just-renamed directory stay on the short period",
                vec![
                    Ev(0, end("d", false)),
                    Ev(0, end("e", true)),
                    Ev(0, mv("d", "e")),
                    Ev(100, end("e/x", false)),
                    Ev(100, end("e/y", true)),
                    Ev(100, mv("e/x", "e/y")),
                    Next(Some(350)),
                    Drain(350, vec![s_mv("d", "e"), s_mv("e/x", "e/y")]),
                ],
            ),
            (
                "a write to the destination extends the pair",
                vec![
                    Ev(0, mv("a", "b")),
                    Ev(1_500, ch("b")),
                    Drain(2_000, vec![]),
                    Drain(3_500, vec![s_mv("a", "b")]),
                ],
            ),
            (
                "a pending change of the source joins the pair",
                vec![
                    Ev(0, ch("a")),
                    Ev(1_000, mv("a", "b")),
                    Drain(2_000, vec![]),
                    Drain(3_000, vec![s_mv("a", "b")]),
                ],
            ),
            (
                "a lone kernel rename settles after the short rename quiet period",
                vec![
                    Ev(0, mv("d", "e")),
                    Next(Some(250)),
                    Drain(200, vec![]),
                    Ev(200, mv("e", "f")),
                    Next(Some(450)),
                    Drain(449, vec![]),
                    Drain(450, vec![s_mv("d", "f"), s_rm("e")]),
                ],
            ),
            (
                "an atomic save (create, then rename over) waits the full quiet period",
                vec![
                    Ev(0, ch("a.tmp")),
                    Ev(10, mv("a.tmp", "a")),
                    Next(Some(2_010)),
                    Drain(300, vec![]),
                    Drain(2_010, vec![s_mv("a.tmp", "a")]),
                ],
            ),
            (
                "a write inside a just-renamed directory puts the move on the full quiet period",
                vec![
                    Ev(0, mv("d", "e")),
                    Ev(100, ch("e/x")),
                    Next(Some(2_100)),
                    Drain(300, vec![]),
                    Drain(2_100, vec![s_mv("d", "e"), s_ch("e/x")]),
                ],
            ),
            (
                "a rename joined to a pending change waits the full quiet period",
                vec![
                    Ev(0, mv("a", "b")),
                    Ev(0, ch("c")),
                    Ev(100, mv("c", "a")),
                    Next(Some(2_100)),
                    Drain(300, vec![]),
                ],
            ),
            (
                // `b` is still reported: a file that was there before the first move was
                // overwritten by it and must go remotely too (a no-op for the planner if not).
                "chained renames compress",
                vec![
                    Ev(0, mv("a", "b")),
                    Ev(100, mv("b", "c")),
                    Drain(3_000, vec![s_mv("a", "c"), s_rm("b")]),
                ],
            ),
            (
                "renamed back and forth is a change of the original",
                vec![
                    Ev(0, mv("a", "b")),
                    Ev(100, mv("b", "a")),
                    Drain(3_000, vec![s_ch("a"), s_rm("b")]),
                ],
            ),
            (
                "source re-created after the move: rename first, then the new file",
                vec![
                    Ev(0, mv("a", "b")),
                    Ev(500, ch("a")),
                    Drain(3_000, vec![s_mv("a", "b"), s_ch("a")]),
                ],
            ),
            (
                "rename over an existing file: the pair, no separate change",
                vec![
                    Ev(0, ch("doc")),
                    Ev(0, ch(".doc.tmp-x")),
                    Ev(50, mv(".doc.tmp-x", "doc")),
                    Drain(3_000, vec![s_mv(".doc.tmp-x", "doc")]),
                ],
            ),
            (
                "move onto an earlier move's destination drops that move",
                vec![
                    Ev(0, mv("a", "x")),
                    Ev(10, mv("b", "x")),
                    Drain(3_000, vec![s_mv("b", "x"), s_rm("a")]),
                ],
            ),
            (
                "writes inside a renamed directory settle with the rename",
                vec![
                    Ev(0, mv("dir", "new")),
                    Ev(1_000, ch("new/sub/f")),
                    Drain(2_000, vec![]),
                    Drain(3_000, vec![s_mv("dir", "new"), s_ch("new/sub/f")]),
                ],
            ),
            (
                "pairs obey the max delay too",
                (0..40)
                    .map(|i| Ev(i * 1_500, ch("b")))
                    .chain([Ev(0, mv("a", "b")), Drain(60_000, vec![s_mv("a", "b")])])
                    .collect(),
            ),
            (
                "batch order: parents first, creations and renames before removals",
                vec![
                    Ev(0, rm("old")),
                    Ev(0, ch("z/deep/file")),
                    Ev(0, rm("gone/child")),
                    Ev(0, ch("z")),
                    Ev(0, rm("gone")),
                    Ev(0, mv("m/src", "a/moved")),
                    Ev(0, ch("a")),
                    Ev(0, ch("z/deep")),
                    Ev(0, ch("a-b")),
                    Drain(
                        2_000,
                        vec![
                            s_ch("a"),
                            s_mv("m/src", "a/moved"),
                            s_ch("a-b"),
                            s_ch("z"),
                            s_ch("z/deep"),
                            s_ch("z/deep/file"),
                            s_rm("gone"),
                            s_rm("gone/child"),
                            s_rm("old"),
                        ],
                    ),
                ],
            ),
            (
                "overflow: beyond max_pending distinct paths, one rescan",
                vec![
                    Ev(0, ch("1")),
                    Ev(0, ch("2")),
                    Ev(0, ch("3")),
                    Ev(0, ch("4")),
                    Ev(0, ch("5")),
                    Ev(0, ch("6")),
                    Ev(0, ch("7")),
                    Ev(0, ch("8")),
                    Ev(0, mv("9", "10")),
                    Len(10),
                    Ev(0, ch("1")),
                    Len(10),
                    Ev(100, ch("11")),
                    Len(1),
                    // Events during the pending rescan extend it but add nothing.
                    Ev(1_000, ch("12")),
                    Len(1),
                    Next(Some(3_000)),
                    Drain(2_100, vec![]),
                    Drain(3_000, vec![Settled::Rescan]),
                    Len(0),
                    Ev(4_000, ch("13")),
                    Drain(6_000, vec![s_ch("13")]),
                ],
            ),
            (
                "rescan clears pending paths and yields one Rescan",
                vec![
                    Ev(0, ch("a")),
                    Ev(0, mv("b", "c")),
                    Ev(500, rescan()),
                    Ev(600, rescan()),
                    Len(1),
                    Drain(10_000, vec![Settled::Rescan]),
                    Drain(20_000, vec![]),
                    Next(None),
                ],
            ),
            (
                "a rescan storm is capped by the max delay",
                (0..100)
                    .map(|i| Ev(i * 1_000, rescan()))
                    .chain([Drain(59_999, vec![]), Drain(60_000, vec![Settled::Rescan])])
                    .collect(),
            ),
            (
                "an event on the root means rescan",
                vec![Ev(0, rm("")), Drain(2_000, vec![Settled::Rescan])],
            ),
        ];
        for (name, steps) in cases {
            run(name, steps);
        }
    }

    #[test]
    fn errors_are_not_queued() {
        let mut q = Queue::new(QueueConfig::default());
        assert!(!q.push(WatchEvent::Error("x".into()), Instant::now()));
        assert!(q.is_empty());
    }

    #[test]
    fn defaults_match_the_design() {
        let c = QueueConfig::default();
        assert_eq!(c.quiet, Duration::from_secs(2));
        assert_eq!(c.max_delay, Duration::from_secs(60));
        assert!(c.rename_quiet < c.quiet);
    }

    /// Drives the queue the way the engine does: sleep until `next_deadline`, drain, with
    /// tokio's paused clock standing in for real time.
    #[tokio::test(start_paused = true)]
    async fn engine_loop_with_paused_clock() {
        let mut q = Queue::new(QueueConfig::default());
        let start = Instant::now();
        q.push(ch("a.txt"), Instant::now());
        tokio::time::advance(Duration::from_millis(1_500)).await;
        q.push(ch("a.txt"), Instant::now());
        q.push(mv("x", "y"), Instant::now());

        let mut batches = Vec::new();
        while let Some(deadline) = q.next_deadline() {
            tokio::time::sleep_until(deadline).await;
            let batch = q.drain_ready(Instant::now());
            assert!(!batch.is_empty(), "woke at a deadline with nothing ready");
            batches.push((Instant::now() - start, batch));
        }
        // The lone rename settles after the short rename quiet period, the write after the
        // full one.
        assert_eq!(
            batches,
            vec![
                (Duration::from_millis(1_750), vec![s_mv("x", "y")]),
                (Duration::from_millis(3_500), vec![s_ch("a.txt")]),
            ]
        );
    }

    #[test]
    fn large_batches_stay_ordered_and_bounded() {
        let t0 = Instant::now();
        let mut q = Queue::new(QueueConfig {
            max_pending: 100_000,
            ..QueueConfig::default()
        });
        for i in (0..10_000).rev() {
            q.push(ch(&format!("d{}/f{}", i % 10, i)), t0);
            q.push(ch(&format!("d{}", i % 10)), t0);
        }
        assert_eq!(q.len(), 10_010);
        let out = q.drain_ready(t0 + Duration::from_secs(2));
        assert_eq!(out.len(), 10_010);
        let paths: Vec<RelPath> = out
            .iter()
            .map(|s| match s {
                Settled::Changed(p) => p.clone(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert!(paths.windows(2).all(|w| w[0] < w[1]), "not sorted");
        assert!(q.is_empty());
    }
}
