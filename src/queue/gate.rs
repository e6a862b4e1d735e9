//! The delete gate: the stage between the planner and the uploader that holds remote deletes
//! back. Owns which vanished paths wait, until when, and whether removals are still coming
//! in. A delete seen through the watcher waits one grace period (two quiet periods) before it
//! is let through, and every batch planned meanwhile reconsiders the waiting paths, so a move
//! whose two halves settle in different batches is still one remote move, not a delete plus
//! a re-upload. While removals keep arriving (an `rm -rf` in progress) waiting deletes are
//! held on, so the mass-delete guard judges the whole removal at once instead of letting its
//! first parts through batch by batch. Pure logic like the debounce queue: time is passed in,
//! nothing here sleeps or reads a clock.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteGateConfig {
    /// A delete seen by the watcher waits this long before it runs, and removals within
    /// this long count as "still coming in". Two quiet periods: the other half of a move
    /// settles within one quiet period of the first (plus the time its batch takes).
    pub grace: Duration,
    /// Waiting deletes are held back at most this long after the first hold while events
    /// keep coming, so a tree where files come and go all the time does not hold its
    /// deletes forever ...
    pub hold_max: Duration,
    /// ... unless the waiting deletes would remove more than this many known entries
    /// (the mass-delete count): a removal that large is judged as a whole however long it
    /// takes (a million files take minutes to `rm`).
    pub mass_delete_count: usize,
}

impl DeleteGateConfig {
    /// The gate for a mirror whose debounce quiet period is `quiet`: the one place the
    /// "two quiet periods" grace is defined.
    pub fn for_quiet_period(quiet: Duration, mass_delete_count: usize) -> Self {
        DeleteGateConfig {
            grace: quiet * 2,
            hold_max: Duration::from_secs(30),
            mass_delete_count,
        }
    }
}

impl Default for DeleteGateConfig {
    fn default() -> Self {
        DeleteGateConfig::for_quiet_period(Duration::from_secs(2), 1000)
    }
}

/// How one planned pass treats its deletes (see [`DeleteGate::begin_pass`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassGate {
    /// Deletes of this pass wait their grace period (else they run now).
    pub hold: bool,
}

/// The waiting deletes of one mirror.
#[derive(Debug)]
pub struct DeleteGate {
    cfg: DeleteGateConfig,
    /// Vanished known paths waiting out the grace period, with their deadline.
    pending: BTreeMap<String, Instant>,
    /// When waiting deletes were first held back because events kept coming.
    held_since: Option<Instant>,
    /// How many known entries the last pass's deletes would remove (waiting ones included):
    /// one waiting delete of a folder can stand for 50,000 files.
    waiting_entries: usize,
    /// Whether removals were still coming in when the running full pass started.
    busy_at_pass_start: bool,
}

impl DeleteGate {
    pub fn new(cfg: DeleteGateConfig) -> Self {
        DeleteGate {
            cfg,
            pending: BTreeMap::new(),
            held_since: None,
            waiting_entries: 0,
            busy_at_pass_start: false,
        }
    }

    pub fn config(&self) -> &DeleteGateConfig {
        &self.cfg
    }

    /// How many deletes wait (work still to do: the mirror is not in sync meanwhile).
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The waiting paths: every batch plans them again (the other half of a move, or the
    /// path's return, may have settled since).
    pub fn paths(&self) -> impl Iterator<Item = &String> {
        self.pending.keys()
    }

    /// When the next waiting delete falls due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().min().copied()
    }

    pub fn any_due(&self, now: Instant) -> bool {
        self.pending.values().any(|d| *d <= now)
    }

    /// Forgets the waiting deletes (the pass after a pause plans them again from the disk).
    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// Whether removals are still coming in: the watcher's last removal (or lost events)
    /// was within the grace period.
    pub fn removals_recent(&self, last_removal: Option<Instant>, now: Instant) -> bool {
        last_removal.is_some_and(|t| now.saturating_duration_since(t) < self.cfg.grace)
    }

    /// A full pass starts: no events are read while it scans, so "still coming in" is
    /// judged as of its start.
    pub fn full_pass_starts(&mut self, last_removal: Option<Instant>, now: Instant) {
        self.busy_at_pass_start = self.removals_recent(last_removal, now);
    }

    /// While the watcher still reports changes (`busy`), waiting deletes stay waiting, for
    /// at most `hold_max` after the first hold unless they would remove more entries than
    /// the mass-delete count.
    pub fn hold_while_busy(&mut self, busy: bool, now: Instant) {
        if !busy || self.pending.is_empty() {
            self.held_since = None;
            return;
        }
        let since = *self.held_since.get_or_insert(now);
        let waiting = self.waiting_entries.max(self.pending.len());
        if now.duration_since(since) > self.cfg.hold_max && waiting <= self.cfg.mass_delete_count {
            return;
        }
        let later = now + self.cfg.grace;
        for deadline in self.pending.values_mut() {
            *deadline = (*deadline).max(later);
        }
    }

    /// A planned pass is about to offer its deletes. `deleted_entries` is how many known
    /// entries its deletes remove; `allowed` is `resume --allow-deletes` (this pass deletes
    /// what it sees gone, now); `from_events` tells a batch of settled paths from a full
    /// pass. A full pass while removals are still coming in (the queue overflowed during a
    /// `rm -rf`) sees only part of the removal: its deletes wait like a batch's.
    pub fn begin_pass(
        &mut self,
        deleted_entries: usize,
        allowed: bool,
        from_events: bool,
        last_removal: Option<Instant>,
        now: Instant,
    ) -> PassGate {
        let busy =
            self.removals_recent(last_removal, now) || (!from_events && self.busy_at_pass_start);
        self.waiting_entries = deleted_entries;
        if busy && !allowed {
            self.hold_while_busy(true, now);
        }
        PassGate {
            hold: !allowed && (from_events || busy),
        }
    }

    /// Whether a planned delete of `path` may run now: one whose grace has passed is let
    /// through (and stops waiting); a new one starts waiting.
    pub fn admit(&mut self, pass: PassGate, path: &str, now: Instant) -> bool {
        if !pass.hold {
            return true;
        }
        match self.pending.get(path) {
            Some(deadline) if *deadline <= now => {
                self.pending.remove(path);
                true
            }
            Some(_) => false,
            None => {
                self.pending.insert(path.to_string(), now + self.cfg.grace);
                false
            }
        }
    }

    /// After a pass: a path that is no longer known (its delete ran, or it moved) or whose
    /// delete runs in this pass stops waiting.
    pub fn settle(&mut self, is_known: impl Fn(&str) -> bool, deleting: &BTreeSet<String>) {
        self.pending
            .retain(|p, _| is_known(p) && !deleting.contains(p));
        if self.pending.is_empty() {
            self.waiting_entries = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    enum Step {
        /// A full pass starts at this many ms; the last removal was at the given ms.
        FullPass(u64, Option<u64>),
        /// A pass at `ms` (from events or not) that would delete `n` entries, allowed or
        /// not, last removal at the given ms: expect whether its deletes are held.
        Pass {
            at: u64,
            entries: usize,
            allowed: bool,
            from_events: bool,
            last_removal: Option<u64>,
            hold: bool,
        },
        /// Offer the delete of a path at `ms` in the last pass: expect it admitted or not.
        Offer(u64, &'static str, bool),
        /// The watcher is (or is not) still busy at `ms`.
        Busy(u64, bool),
        /// Expect the next deadline at this many milliseconds.
        Next(Option<u64>),
        Due(u64, bool),
        Recent(u64, Option<u64>, bool),
        /// Settle: these paths are still known, these deletes run.
        Settle(&'static [&'static str], &'static [&'static str]),
        Len(usize),
    }
    use Step::*;

    fn cfg() -> DeleteGateConfig {
        DeleteGateConfig {
            grace: Duration::from_millis(4_000),
            hold_max: Duration::from_millis(30_000),
            mass_delete_count: 3,
        }
    }

    fn batch(at: u64, entries: usize, hold: bool) -> Step {
        Pass {
            at,
            entries,
            allowed: false,
            from_events: true,
            last_removal: None,
            hold,
        }
    }

    fn run(name: &str, steps: Vec<Step>) {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut g = DeleteGate::new(cfg());
        let mut pass = PassGate { hold: true };
        for (i, step) in steps.into_iter().enumerate() {
            match step {
                FullPass(ms, last) => g.full_pass_starts(last.map(at), at(ms)),
                Pass {
                    at: ms,
                    entries,
                    allowed,
                    from_events,
                    last_removal,
                    hold,
                } => {
                    pass =
                        g.begin_pass(entries, allowed, from_events, last_removal.map(at), at(ms));
                    assert_eq!(
                        pass.hold, hold,
                        "{name}: step {i}: pass holds; gate: {g:#?}"
                    );
                }
                Offer(ms, path, want) => assert_eq!(
                    g.admit(pass, path, at(ms)),
                    want,
                    "{name}: step {i}: delete of {path} at {ms} ms; gate: {g:#?}"
                ),
                Busy(ms, busy) => g.hold_while_busy(busy, at(ms)),
                Next(ms) => assert_eq!(g.next_deadline(), ms.map(at), "{name}: step {i}: next"),
                Due(ms, want) => assert_eq!(g.any_due(at(ms)), want, "{name}: step {i}: due"),
                Recent(ms, last, want) => assert_eq!(
                    g.removals_recent(last.map(at), at(ms)),
                    want,
                    "{name}: step {i}: recent"
                ),
                Settle(known, deleting) => {
                    let deleting = deleting.iter().map(|s| s.to_string()).collect();
                    g.settle(|p| known.contains(&p), &deleting);
                }
                Len(n) => assert_eq!(g.len(), n, "{name}: step {i}: len"),
            }
        }
    }

    #[test]
    fn delete_gate_table() {
        let cases: Vec<(&str, Vec<Step>)> = vec![
            (
                "a delete from events waits two quiet periods, then runs",
                vec![
                    Next(None),
                    batch(0, 1, true),
                    Offer(0, "a", false),
                    Len(1),
                    Next(Some(4_000)),
                    Due(3_999, false),
                    Due(4_000, true),
                    batch(4_000, 1, true),
                    Offer(4_000, "a", true),
                    Len(0),
                    Next(None),
                ],
            ),
            (
                "offered again before its deadline it keeps waiting, deadline unchanged",
                vec![
                    batch(0, 1, true),
                    Offer(0, "a", false),
                    batch(1_000, 1, true),
                    Offer(1_000, "a", false),
                    Next(Some(4_000)),
                ],
            ),
            (
                "a full pass with no removals coming in deletes at once",
                vec![
                    Pass {
                        at: 0,
                        entries: 1,
                        allowed: false,
                        from_events: false,
                        last_removal: None,
                        hold: false,
                    },
                    Offer(0, "a", true),
                    Len(0),
                ],
            ),
            (
                "resume --allow-deletes lets a batch's deletes through at once",
                vec![
                    Pass {
                        at: 0,
                        entries: 50,
                        allowed: true,
                        from_events: true,
                        last_removal: Some(0),
                        hold: false,
                    },
                    Offer(0, "a", true),
                ],
            ),
            (
                "a full pass started while removals came in holds its deletes",
                vec![
                    FullPass(0, Some(0)),
                    Pass {
                        at: 10_000,
                        entries: 1,
                        allowed: false,
                        from_events: false,
                        last_removal: Some(0),
                        hold: true,
                    },
                    Offer(10_000, "a", false),
                    Next(Some(14_000)),
                ],
            ),
            (
                "a full pass during a removal that began after it started holds too",
                vec![
                    FullPass(0, None),
                    Pass {
                        at: 10_000,
                        entries: 1,
                        allowed: false,
                        from_events: false,
                        last_removal: Some(9_000),
                        hold: true,
                    },
                ],
            ),
            (
                "removals are recent within the grace period only",
                vec![
                    Recent(0, None, false),
                    Recent(3_999, Some(0), true),
                    Recent(4_000, Some(0), false),
                ],
            ),
            (
                "busy events push waiting deadlines one grace period on",
                vec![
                    batch(0, 1, true),
                    Offer(0, "a", false),
                    Busy(3_000, true),
                    Next(Some(7_000)),
                    Busy(5_000, false),
                    Next(Some(7_000)),
                ],
            ),
            (
                "a small removal is held at most hold_max",
                vec![
                    batch(0, 1, true),
                    Offer(0, "a", false),
                    Busy(1_000, true),
                    Busy(20_000, true),
                    Next(Some(24_000)),
                    Busy(31_001, true),
                    Next(Some(24_000)),
                    Due(31_001, true),
                ],
            ),
            (
                "a removal over the mass-delete count is held as long as events come",
                vec![
                    batch(0, 10, true),
                    Offer(0, "big", false),
                    Busy(1_000, true),
                    Busy(60_000, true),
                    Next(Some(64_000)),
                ],
            ),
            (
                "a pass that is busy and over the count holds its deletes on",
                vec![
                    batch(0, 1, true),
                    Offer(0, "a", false),
                    Pass {
                        at: 3_000,
                        entries: 10,
                        allowed: false,
                        from_events: true,
                        last_removal: Some(2_500),
                        hold: true,
                    },
                    Next(Some(7_000)),
                ],
            ),
            (
                "a quiet spell ends the hold: the next busy spell starts a fresh cap",
                vec![
                    batch(0, 1, true),
                    Offer(0, "a", false),
                    Busy(1_000, true),
                    Busy(25_000, false),
                    Busy(40_000, true),
                    Next(Some(44_000)),
                ],
            ),
            (
                "settle: paths no longer known, or deleted now, stop waiting",
                vec![
                    batch(0, 3, true),
                    Offer(0, "moved", false),
                    Offer(0, "deleting", false),
                    Offer(0, "waits", false),
                    Len(3),
                    Settle(&["deleting", "waits"], &["deleting"]),
                    Len(1),
                    Next(Some(4_000)),
                ],
            ),
        ];
        for (name, steps) in cases {
            run(name, steps);
        }
    }

    #[test]
    fn grace_is_two_quiet_periods() {
        let c = DeleteGateConfig::for_quiet_period(Duration::from_millis(1_500), 7);
        assert_eq!(c.grace, Duration::from_millis(3_000));
        assert_eq!(c.hold_max, Duration::from_secs(30));
        assert_eq!(c.mass_delete_count, 7);
    }
}
