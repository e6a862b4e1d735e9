//! The shared rate-limit pacer: one per client, used by every worker, so that concurrent
//! uploads slow down together *before* the per-token budget runs out instead of meeting
//! 429s.
//!
//! It learns the budget from `X-RateLimit-Limit/Remaining/Reset` on every response and
//! accounts locally for requests sent since (each request states its documented cost in
//! units: metadata GET 1, list/write 2, transfer 5). While the remaining budget is above
//! [`PaceConfig::slow_below`] of the limit requests go at once; below it the remaining
//! units are spread evenly over the time to the reset; with nothing left every worker waits
//! for the reset and a single probe request finds out how much came back (the window
//! slides, so a reset frees only what was spent a window ago). A 429 pauses everyone until
//! its `Retry-After`. Without the headers (no rate limit announced) it never delays.
//!
//! The decisions are a pure function of the state and a clock reading ([`PaceState::plan`]),
//! tested without sleeping; [`Pacer`] wraps it in a mutex held only for that computation.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use tokio::time::Instant;

/// Tuning of the pacer.
#[derive(Clone, Debug)]
pub struct PaceConfig {
    /// Start spreading requests when the remaining budget falls below this fraction of
    /// the limit (the docs recommend slowing down below 10 %; a little earlier leaves room
    /// for requests already in flight).
    pub slow_below: f64,
    /// The documented window; a `Reset` further away than this (clock skew) is clamped.
    pub window: Duration,
    /// How often a worker waiting for another's probe re-checks.
    pub probe_poll: Duration,
}

impl Default for PaceConfig {
    fn default() -> Self {
        PaceConfig {
            slow_below: 0.15,
            window: Duration::from_secs(60),
            probe_poll: Duration::from_millis(50),
        }
    }
}

/// What the pacer knows, and the pure decision function over it.
#[derive(Debug)]
pub struct PaceState {
    /// Per-window budget in units, once the server has announced one.
    pub limit: Option<u64>,
    /// Units we believe are left: the last reading minus what was sent since.
    pub remaining: u64,
    /// When the server said the window resets.
    pub reset_at: Instant,
    /// Units acquired whose responses have not been seen.
    pub inflight: u64,
    /// Earliest time the next request may go while spreading.
    pub next_slot: Instant,
    /// Set by a 429: nobody sends before this.
    pub paused_until: Option<Instant>,
    /// A probe request after a reset is under way.
    pub probing: bool,
}

/// The outcome of [`PaceState::plan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Send now; `probe` marks the single request that re-learns the budget.
    Go { probe: bool },
    /// Ask again at this instant.
    WaitUntil(Instant),
}

impl PaceState {
    pub fn new(now: Instant) -> PaceState {
        PaceState {
            limit: None,
            remaining: 0,
            reset_at: now,
            inflight: 0,
            next_slot: now,
            paused_until: None,
            probing: false,
        }
    }

    /// Decides whether a request costing `cost` units may go at `now`; if so, the units
    /// are taken from the budget.
    pub fn plan(&mut self, cost: u64, now: Instant, cfg: &PaceConfig) -> Plan {
        if let Some(p) = self.paused_until {
            if now < p {
                return Plan::WaitUntil(p);
            }
            self.paused_until = None;
        }
        let Some(limit) = self.limit else {
            self.inflight += cost;
            return Plan::Go { probe: false };
        };
        if cost == 0 {
            return Plan::Go { probe: false };
        }
        if self.remaining >= cost {
            let threshold = (limit as f64 * cfg.slow_below).ceil() as u64;
            if self.remaining - cost < threshold {
                if self.next_slot > now {
                    return Plan::WaitUntil(self.next_slot);
                }
                // Spread what is left evenly over the time until the window resets.
                let to_reset = self.reset_at.saturating_duration_since(now);
                let per_unit = to_reset.div_f64(self.remaining.max(1) as f64);
                self.next_slot = now + per_unit.mul_f64(cost as f64);
            }
            self.remaining -= cost;
            self.inflight += cost;
            return Plan::Go { probe: false };
        }
        if now < self.reset_at {
            return Plan::WaitUntil(self.reset_at);
        }
        // Past the reset we do not know how much came back; one request finds out.
        if self.probing {
            return Plan::WaitUntil(now + cfg.probe_poll);
        }
        self.probing = true;
        self.inflight += cost;
        Plan::Go { probe: true }
    }

    /// Takes in a response's rate-limit headers (any status). `cost` is what the request
    /// acquired; `now_unix` the local wall clock, to turn `Reset` into an instant.
    pub fn observe(
        &mut self,
        cost: u64,
        probe: bool,
        reading: Option<Reading>,
        now: Instant,
        now_unix: u64,
        cfg: &PaceConfig,
    ) {
        self.release(cost, probe);
        let Some(r) = reading else { return };
        if let Some(l) = r.limit {
            self.limit = Some(l);
        }
        if self.limit.is_none() {
            return;
        }
        if let Some(rem) = r.remaining {
            // Requests still in flight were (mostly) not counted in this reading yet.
            self.remaining = rem.saturating_sub(self.inflight);
        }
        if let Some(reset) = r.reset_unix {
            let secs = reset.saturating_sub(now_unix);
            let to_reset = Duration::from_secs(secs).min(cfg.window);
            self.reset_at = now + to_reset;
        }
    }

    /// Gives back the in-flight units of a request that ended without a response.
    pub fn release(&mut self, cost: u64, probe: bool) {
        self.inflight = self.inflight.saturating_sub(cost);
        if probe {
            self.probing = false;
        }
    }

    /// A 429: nobody sends until `now + wait`, and the budget counts as spent.
    pub fn pause(&mut self, now: Instant, wait: Duration) {
        let until = now + wait;
        self.paused_until = Some(self.paused_until.map_or(until, |p| p.max(until)));
        self.remaining = 0;
        if self.reset_at < until {
            self.reset_at = until;
        }
    }
}

/// The three `X-RateLimit-*` headers of one response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reading {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    pub reset_unix: Option<u64>,
}

impl Reading {
    pub fn from_headers(h: &HeaderMap) -> Option<Reading> {
        let num = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.trim().parse::<u64>().ok())
        };
        let r = Reading {
            limit: num("x-ratelimit-limit").filter(|l| *l > 0),
            remaining: num("x-ratelimit-remaining"),
            reset_unix: num("x-ratelimit-reset"),
        };
        (r != Reading::default()).then_some(r)
    }
}

/// The budget a 429 names in `error.details.dimension` (`scaidrive-api.md` §5): this
/// token's (1,000 units a minute by default), the user's across all their tokens (5,000)
/// or the tenant's (50,000). Each is honoured the same way (wait `Retry-After`, everyone);
/// which one is spent is what `status` shows, since only the token's shows in the
/// `X-RateLimit-*` headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateDimension {
    Token,
    User,
    Tenant,
}

impl RateDimension {
    pub const ALL: [RateDimension; 3] = [
        RateDimension::Token,
        RateDimension::User,
        RateDimension::Tenant,
    ];

    /// The body's `dimension`; `None` for a value the docs do not list.
    pub fn parse(s: &str) -> Option<RateDimension> {
        match s {
            "token" => Some(RateDimension::Token),
            "user" => Some(RateDimension::User),
            "tenant" => Some(RateDimension::Tenant),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RateDimension::Token => "token",
            RateDimension::User => "user",
            RateDimension::Tenant => "tenant",
        }
    }
}

impl std::fmt::Display for RateDimension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counters for reports and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PaceStats {
    /// Times a request had to wait (spreading, reset or 429 pause).
    pub waits: u64,
    /// 429 pauses taken.
    pub pauses: u64,
    /// Of those, by the budget the 429 named (token, user, tenant; a 429 naming none
    /// counts as the token's).
    pub pauses_by: [u64; 3],
}

impl PaceStats {
    pub fn pauses_for(&self, d: RateDimension) -> u64 {
        self.pauses_by[d as usize]
    }
}

/// The shared pacer; cheap to call, holds its mutex only while planning.
#[derive(Debug)]
pub struct Pacer {
    cfg: PaceConfig,
    state: Mutex<PaceState>,
    stats: Mutex<PaceStats>,
    /// The budget the last 429 named, and until when it asked us to wait.
    spent: Mutex<Option<(RateDimension, Instant)>>,
}

impl Pacer {
    pub fn new(cfg: PaceConfig) -> Pacer {
        Pacer {
            cfg,
            state: Mutex::new(PaceState::new(Instant::now())),
            stats: Mutex::new(PaceStats::default()),
            spent: Mutex::new(None),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PaceState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until a request costing `cost` units may go.
    pub async fn acquire(&self, cost: u64) -> Permit<'_> {
        let mut waited = false;
        loop {
            let plan = self.state().plan(cost, Instant::now(), &self.cfg);
            match plan {
                Plan::Go { probe } => {
                    if waited {
                        self.stats.lock().unwrap_or_else(|e| e.into_inner()).waits += 1;
                    }
                    return Permit {
                        pacer: self,
                        cost,
                        probe,
                        done: false,
                    };
                }
                Plan::WaitUntil(t) => {
                    waited = true;
                    tokio::time::sleep_until(t).await;
                }
            }
        }
    }

    /// Pauses every worker for `wait` (after a 429 that named budget `dim`).
    pub fn pause_for(&self, wait: Duration, dim: RateDimension) {
        let now = Instant::now();
        self.state().pause(now, wait);
        *self.spent.lock().unwrap_or_else(|e| e.into_inner()) = Some((dim, now + wait));
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats.pauses += 1;
        stats.pauses_by[dim as usize] += 1;
    }

    /// The budget a 429 said is spent, while the pause it asked for lasts.
    pub fn spent(&self) -> Option<RateDimension> {
        let spent = *self.spent.lock().unwrap_or_else(|e| e.into_inner());
        spent
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(d, _)| d)
    }

    pub fn stats(&self) -> PaceStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current belief: (limit, remaining units).
    pub fn budget(&self) -> (Option<u64>, u64) {
        let s = self.state();
        (s.limit, s.remaining)
    }
}

/// Permission to send one request; report its response with [`Permit::observe`]. Dropped
/// unobserved (no response), its units are released.
#[derive(Debug)]
pub struct Permit<'a> {
    pacer: &'a Pacer,
    cost: u64,
    probe: bool,
    done: bool,
}

impl Permit<'_> {
    pub fn observe(mut self, headers: &HeaderMap) {
        let now_unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        self.pacer.state().observe(
            self.cost,
            self.probe,
            Reading::from_headers(headers),
            Instant::now(),
            now_unix,
            &self.pacer.cfg,
        );
        self.done = true;
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.pacer.state().release(self.cost, self.probe);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_UNIX: u64 = 1_800_000_000;

    fn cfg() -> PaceConfig {
        PaceConfig::default()
    }

    fn reading(limit: u64, remaining: u64, reset_in: u64) -> Option<Reading> {
        Some(Reading {
            limit: Some(limit),
            remaining: Some(remaining),
            reset_unix: Some(NOW_UNIX + reset_in),
        })
    }

    #[test]
    fn no_headers_no_pacing() {
        let t0 = Instant::now();
        let mut s = PaceState::new(t0);
        for _ in 0..10_000 {
            assert_eq!(s.plan(5, t0, &cfg()), Plan::Go { probe: false });
        }
        s.observe(5, false, None, t0, NOW_UNIX, &cfg());
        assert_eq!(s.limit, None);
    }

    #[test]
    fn full_speed_above_threshold_then_spread_over_reset() {
        let t0 = Instant::now();
        let mut s = PaceState::new(t0);
        s.observe(0, false, reading(1000, 1000, 60), t0, NOW_UNIX, &cfg());
        // 850 units go at once: the remaining budget stays at or above 15 %.
        for _ in 0..170 {
            assert_eq!(s.plan(5, t0, &cfg()), Plan::Go { probe: false });
        }
        assert_eq!(s.remaining, 150);
        // Below the threshold: 150 units over 60 s is 0.4 s per unit, 2 s per 5-unit call.
        assert_eq!(s.plan(5, t0, &cfg()), Plan::Go { probe: false });
        let next = s.plan(5, t0, &cfg());
        assert_eq!(next, Plan::WaitUntil(t0 + Duration::from_secs(2)));
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(s.plan(5, t1, &cfg()), Plan::Go { probe: false });
        assert!(matches!(s.plan(5, t1, &cfg()), Plan::WaitUntil(t) if t > t1));
    }

    #[test]
    fn spread_covers_the_remaining_budget_until_reset() {
        // Simulate one worker that always sends as soon as allowed: over the time to the
        // reset it must spend (almost) exactly what was left, never more.
        let t0 = Instant::now();
        let mut s = PaceState::new(t0);
        s.observe(0, false, reading(1000, 100, 30), t0, NOW_UNIX, &cfg());
        let mut now = t0;
        let mut sent = 0;
        while now < t0 + Duration::from_secs(30) {
            match s.plan(2, now, &cfg()) {
                Plan::Go { .. } => {
                    sent += 2;
                    s.release(2, false);
                }
                Plan::WaitUntil(t) => now = t,
            }
        }
        assert!(
            (96..=100).contains(&sent),
            "sent {sent} of 100 units before the reset"
        );
    }

    #[test]
    fn exhausted_budget_waits_for_reset_then_probes_once() {
        let t0 = Instant::now();
        let mut s = PaceState::new(t0);
        s.observe(0, false, reading(100, 3, 10), t0, NOW_UNIX, &cfg());
        assert_eq!(
            s.plan(5, t0, &cfg()),
            Plan::WaitUntil(t0 + Duration::from_secs(10))
        );
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(s.plan(5, t1, &cfg()), Plan::Go { probe: true });
        assert_eq!(
            s.plan(5, t1, &cfg()),
            Plan::WaitUntil(t1 + cfg().probe_poll),
            "one probe at a time"
        );
        // The probe's response says 40 units came back.
        s.observe(5, true, reading(100, 40, 20), t1, NOW_UNIX, &cfg());
        assert!(!s.probing);
        assert_eq!(s.remaining, 40);
        assert_eq!(s.plan(5, t1, &cfg()), Plan::Go { probe: false });
    }

    #[test]
    fn in_flight_units_are_subtracted_from_readings() {
        let t0 = Instant::now();
        let mut s = PaceState::new(t0);
        s.observe(0, false, reading(1000, 1000, 60), t0, NOW_UNIX, &cfg());
        for _ in 0..4 {
            assert_eq!(s.plan(5, t0, &cfg()), Plan::Go { probe: false });
        }
        assert_eq!(s.inflight, 20);
        // First response: the server counted only its own request.
        s.observe(5, false, reading(1000, 995, 60), t0, NOW_UNIX, &cfg());
        assert_eq!(s.inflight, 15);
        assert_eq!(s.remaining, 980);
    }

    #[test]
    fn pause_holds_everyone_and_resets_budget() {
        let t0 = Instant::now();
        let mut s = PaceState::new(t0);
        s.observe(0, false, reading(1000, 900, 60), t0, NOW_UNIX, &cfg());
        s.pause(t0, Duration::from_secs(3));
        assert_eq!(
            s.plan(1, t0 + Duration::from_secs(1), &cfg()),
            Plan::WaitUntil(t0 + Duration::from_secs(3))
        );
        // A shorter pause does not shorten a longer one.
        s.pause(t0, Duration::from_secs(1));
        assert_eq!(
            s.plan(1, t0, &cfg()),
            Plan::WaitUntil(t0 + Duration::from_secs(3))
        );
        // Without a budget reading, pauses alone still apply.
        let mut u = PaceState::new(t0);
        u.pause(t0, Duration::from_secs(2));
        assert_eq!(
            u.plan(1, t0, &cfg()),
            Plan::WaitUntil(t0 + Duration::from_secs(2))
        );
        assert_eq!(
            u.plan(1, t0 + Duration::from_secs(2), &cfg()),
            Plan::Go { probe: false }
        );
    }

    #[test]
    fn reset_far_away_is_clamped_to_the_window() {
        let t0 = Instant::now();
        let mut s = PaceState::new(t0);
        s.observe(0, false, reading(1000, 0, 90_000), t0, NOW_UNIX, &cfg());
        assert_eq!(s.reset_at, t0 + Duration::from_secs(60));
        s.observe(
            0,
            false,
            Some(Reading {
                limit: None,
                remaining: Some(0),
                reset_unix: Some(NOW_UNIX - 5),
            }),
            t0,
            NOW_UNIX,
            &cfg(),
        );
        assert_eq!(s.reset_at, t0, "a reset in the past means now");
    }

    #[test]
    fn headers_parse() {
        let mut h = HeaderMap::new();
        assert_eq!(Reading::from_headers(&h), None);
        h.insert("x-ratelimit-limit", "1000".parse().unwrap());
        h.insert("x-ratelimit-remaining", "42".parse().unwrap());
        h.insert("x-ratelimit-reset", "1800000060".parse().unwrap());
        assert_eq!(
            Reading::from_headers(&h),
            Some(Reading {
                limit: Some(1000),
                remaining: Some(42),
                reset_unix: Some(1_800_000_060)
            })
        );
        h.insert("x-ratelimit-limit", "0".parse().unwrap());
        assert_eq!(
            Reading::from_headers(&h).unwrap().limit,
            None,
            "0 means no limit announced"
        );
    }

    #[tokio::test]
    async fn concurrent_workers_share_one_budget() {
        let pacer = std::sync::Arc::new(Pacer::new(cfg()));
        {
            let p = pacer.acquire(1).await;
            let mut h = HeaderMap::new();
            let reset = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + 3;
            h.insert("x-ratelimit-limit", "100".parse().unwrap());
            h.insert("x-ratelimit-remaining", "20".parse().unwrap());
            h.insert("x-ratelimit-reset", reset.to_string().parse().unwrap());
            p.observe(&h);
        }
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let pacer = pacer.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..5 {
                    pacer.acquire(1).await.observe(&HeaderMap::new());
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // 5 units go at once (down to the 15 % threshold), the other 15 are spread over the
        // 2–3 s left until the reset (Reset has whole seconds): the last goes at about
        // 14/15 of that, so the four workers together took well over 1.5 s instead of
        // bursting.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(1500), "took {took:?}");
        assert!(took <= Duration::from_secs(4), "took {took:?}");
        assert!(pacer.stats().waits > 0);
    }
}
