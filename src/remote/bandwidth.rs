//! The daemon's bandwidth limit: one smooth token bucket shared by every transfer, applied
//! to request bodies as they stream from disk, with the rate taken from a weekly timetable.
//!
//! `[daemon] bandwidth_limit` is `"off"`, a rate (`"2MiB/s"`), or a timetable
//! (`"Mon-Fri 08:00-18:00 1MiB/s, Sat 10:00-12:00 500KiB/s, 20MiB/s"`: entries in local
//! time, the first that matches wins, the last entry a bare rate or `off`, the default).
//! The bucket is a GCRA (virtual scheduling): each piece of a body reserves its bytes and
//! is released no earlier than its theoretical time minus a quarter second, so no window of
//! T seconds carries more than `rate × (T + 0.25)` bytes and nothing bursts at line rate
//! then sleeps. Bodies are cut into pieces of at most a sixteenth of a second's worth, so
//! the bytes also reach the socket evenly. A rate change (a timetable boundary,
//! `scaidrivectl limit`, a reload) rescales the debt already queued to the new rate.
//! Everything passing through is metered, limited or not, for `status`' current rate.
//! The clock is injected ([`WallClock`]) for the timetable, and the bucket runs on
//! `tokio::time`, so tests pause time.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use tokio::time::Instant;

/// Longest stretch the bucket lets through above the rate: a quarter second's worth.
pub const BURST: Duration = Duration::from_millis(250);
/// Largest piece a limited body is cut into, in seconds of the rate.
const PIECE_SECS: f64 = 1.0 / 16.0;
/// The window `status` reports the current rate over.
const METER_WINDOW: Duration = Duration::from_secs(2);

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// A rate in bytes a second; `None` is no limit.
pub type Rate = Option<u64>;

/// One timetable entry: on `days` (bit 0 Monday), from `start` to `end` (minutes of the
/// local day; `end` may be `24:00`), the rate `rate`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    days: u8,
    start: u16,
    end: u16,
    rate: Rate,
}

/// A parsed `bandwidth_limit`: timetable entries and the default rate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    entries: Vec<Entry>,
    default: Rate,
    text: String,
}

/// A local wall-clock moment as the timetable sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalTime {
    /// 0 = Monday … 6 = Sunday.
    pub weekday: u8,
    /// Minutes since local midnight.
    pub minute: u16,
}

/// Where the timetable reads the local time.
pub trait WallClock: Send + Sync {
    fn now(&self) -> LocalTime;
}

/// The system's local time: the zone of `TZ` (a zone name, `:/path` to a TZif file, or a
/// POSIX rule) or `/etc/localtime`, read by `jiff` on first use (see [`system_zone`]).
pub struct SystemClock {
    zone: std::sync::OnceLock<TimeZone>,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        SystemClock {
            zone: std::sync::OnceLock::new(),
        }
    }

    /// A clock reading the real time in `zone` instead of the system's.
    pub fn in_zone(zone: TimeZone) -> SystemClock {
        SystemClock {
            zone: std::sync::OnceLock::from(zone),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl WallClock for SystemClock {
    fn now(&self) -> LocalTime {
        let zone = self.zone.get_or_init(system_zone);
        local_time_in(zone, Timestamp::now())
    }
}

/// The system's time zone (`TZ`, else `/etc/localtime`). No `TZ` and no `/etc/localtime`
/// is UTC (how minimal systems say it); a zone that cannot be read or parsed is UTC with a
/// warning in the log naming it.
pub fn system_zone() -> TimeZone {
    match TimeZone::try_system() {
        Ok(zone) => zone,
        Err(e) => {
            let tz = std::env::var_os("TZ");
            if tz.is_none() && !std::path::Path::new("/etc/localtime").exists() {
                return TimeZone::UTC;
            }
            let source = match tz {
                Some(v) => format!("TZ={:?}", v.to_string_lossy()),
                None => "/etc/localtime".to_string(),
            };
            tracing::warn!("local time zone {source}: {e}; local times are shown in UTC");
            TimeZone::UTC
        }
    }
}

/// The weekday and minute of the moment `at` on the wall clocks of `zone` (its offsets,
/// daylight saving rules included).
pub fn local_time_in(zone: &TimeZone, at: Timestamp) -> LocalTime {
    let dt = zone.to_datetime(at);
    LocalTime {
        weekday: dt.weekday().to_monday_zero_offset() as u8,
        minute: dt.hour() as u16 * 60 + dt.minute() as u16,
    }
}

/// The weekday and minute of a local time given as seconds since the epoch (plus offset).
pub fn local_time_at(local_secs: i64) -> LocalTime {
    let days = local_secs.div_euclid(86_400);
    let secs = local_secs.rem_euclid(86_400);
    // 1970-01-01 was a Thursday (3 with Monday = 0).
    LocalTime {
        weekday: ((days + 3).rem_euclid(7)) as u8,
        minute: (secs / 60) as u16,
    }
}

/// Parses a rate: `off`, or a number with a unit of bytes a second (`B/s`, `KB/s`,
/// `KiB/s`, `MB/s`, `MiB/s`, `GB/s`, `GiB/s`; decimal prefixes are powers of 1000).
pub fn parse_rate(s: &str) -> Result<Rate, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "b/s" => 1,
        "kb/s" => 1000,
        "kib/s" => 1 << 10,
        "mb/s" => 1_000_000,
        "mib/s" => 1 << 20,
        "gb/s" => 1_000_000_000,
        "gib/s" => 1 << 30,
        _ => {
            return Err(format!(
                "{t:?} is not a rate (expected e.g. \"2MiB/s\", \"500KiB/s\" or \"off\")"
            ));
        }
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{t:?} is not a rate (expected a number before {unit:?})"))?;
    let bps = (n * mult as f64).round();
    if !(1024.0..1e15).contains(&bps) {
        return Err(format!("rate {t:?} must be at least 1KiB/s (or \"off\")"));
    }
    Ok(Some(bps as u64))
}

/// `2MiB/s`-style text for a rate.
pub fn format_rate(rate: Rate) -> String {
    match rate {
        None => "off".into(),
        Some(b) => {
            for (unit, size) in [
                ("GiB/s", 1u64 << 30),
                ("MiB/s", 1 << 20),
                ("KiB/s", 1 << 10),
            ] {
                if b >= size {
                    let v = b as f64 / size as f64;
                    return if (v - v.round()).abs() < 0.005 {
                        format!("{}{unit}", v.round())
                    } else {
                        format!("{v:.2}{unit}")
                    };
                }
            }
            format!("{b}B/s")
        }
    }
}

fn parse_days(s: &str) -> Result<u8, String> {
    let day = |d: &str| {
        DAYS.iter()
            .position(|x| x.eq_ignore_ascii_case(d))
            .ok_or_else(|| format!("{d:?} is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)"))
    };
    let mut mask = 0u8;
    for part in s.split('+') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                let mut d = a;
                loop {
                    mask |= 1 << d;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => mask |= 1 << day(part)?,
        }
    }
    Ok(mask)
}

fn parse_hhmm(s: &str) -> Result<u16, String> {
    let bad = || format!("{s:?} is not a time of day (HH:MM)");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

impl Schedule {
    /// Parses `off`, a rate, or a timetable; the error is one line without the key (the
    /// caller names it).
    pub fn parse(s: &str) -> Result<Schedule, String> {
        let text = s.split_whitespace().collect::<Vec<_>>().join(" ");
        let parts: Vec<&str> = text.split(',').map(str::trim).collect();
        let (last, rest) = parts.split_last().expect("split yields one part");
        let default = parse_rate(last).map_err(|e| {
            if parts.len() > 1 || last.contains(':') {
                format!("the last entry must be the default rate: {e}")
            } else {
                e
            }
        })?;
        let mut entries = Vec::new();
        for p in rest {
            let words: Vec<&str> = p.split_whitespace().collect();
            let (days, window, rate) = match words.as_slice() {
                [d, w, r] => (parse_days(d)?, *w, *r),
                [w, r] if w.contains(':') => (0x7f, *w, *r),
                _ => {
                    return Err(format!(
                        "entry {p:?} is not \"[DAYS] HH:MM-HH:MM RATE\" (e.g. \"Mon-Fri 08:00-18:00 1MiB/s\")"
                    ));
                }
            };
            let (a, b) = window
                .split_once('-')
                .ok_or_else(|| format!("{window:?} is not a time window (HH:MM-HH:MM)"))?;
            let (start, end) = (parse_hhmm(a)?, parse_hhmm(b)?);
            if start == end {
                return Err(format!("time window {window:?} is empty"));
            }
            entries.push(Entry {
                days,
                start,
                end,
                rate: parse_rate(rate)?,
            });
        }
        Ok(Schedule {
            entries,
            default,
            text,
        })
    }

    /// The rate in force now by `clock` (not read when there is no timetable).
    pub fn rate_now(&self, clock: &dyn WallClock) -> Rate {
        if self.entries.is_empty() {
            self.default
        } else {
            self.rate_at(clock.now())
        }
    }

    /// No limit at any time.
    pub fn off() -> Schedule {
        Schedule {
            entries: Vec::new(),
            default: None,
            text: "off".into(),
        }
    }

    /// The rate in force at `t`: the first entry whose days and window hold it, else the
    /// default. A window that ends before it starts (`22:00-06:00`) runs past midnight and
    /// belongs to the day it starts on.
    pub fn rate_at(&self, t: LocalTime) -> Rate {
        let yesterday = (t.weekday + 6) % 7;
        for e in &self.entries {
            let hit = if e.start < e.end {
                e.days & (1 << t.weekday) != 0 && t.minute >= e.start && t.minute < e.end
            } else {
                (e.days & (1 << t.weekday) != 0 && t.minute >= e.start)
                    || (e.days & (1 << yesterday) != 0 && t.minute < e.end)
            };
            if hit {
                return e.rate;
            }
        }
        self.default
    }

    pub fn is_off(&self) -> bool {
        self.entries.is_empty() && self.default.is_none()
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Where the schedule in force came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Config,
    /// `scaidrivectl limit`, until the next reload or restart.
    Override,
}

/// What `status` shows of the limiter.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub schedule: String,
    pub source: Source,
    /// The rate in force now.
    pub limit: Rate,
    /// Bytes a second through the limiter over the last two seconds.
    pub current_bps: u64,
}

struct Bucket {
    configured: Schedule,
    over: Option<Schedule>,
    /// The rate the bucket ran at last (to rescale its debt on a change).
    rate: Rate,
    /// Theoretical arrival time of the next byte (GCRA).
    tat: Instant,
}

#[derive(Default)]
struct Meter {
    /// (start of a 100 ms slot, bytes released in it), oldest first.
    slots: VecDeque<(Instant, u64)>,
}

impl Meter {
    fn record(&mut self, now: Instant, n: u64) {
        match self.slots.back_mut() {
            Some((start, b)) if now.duration_since(*start) < Duration::from_millis(100) => *b += n,
            _ => self.slots.push_back((now, n)),
        }
        self.trim(now);
    }
    fn trim(&mut self, now: Instant) {
        while let Some((start, _)) = self.slots.front() {
            if now.duration_since(*start) > METER_WINDOW {
                self.slots.pop_front();
            } else {
                break;
            }
        }
    }
    fn rate(&mut self, now: Instant) -> u64 {
        self.trim(now);
        let sum: u64 = self.slots.iter().map(|(_, b)| b).sum();
        (sum as f64 / METER_WINDOW.as_secs_f64()) as u64
    }
}

struct Shared {
    clock: Arc<dyn WallClock>,
    bucket: Mutex<Bucket>,
    meter: Mutex<Meter>,
}

/// The daemon's limiter; clones share one bucket.
#[derive(Clone)]
pub struct Bandwidth {
    shared: Arc<Shared>,
}

impl fmt::Debug for Bandwidth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bandwidth")
            .field("schedule", &self.snapshot().schedule)
            .finish()
    }
}

impl Default for Bandwidth {
    fn default() -> Self {
        Bandwidth::new(Schedule::off(), Arc::new(SystemClock::new()))
    }
}

impl Bandwidth {
    pub fn new(schedule: Schedule, clock: Arc<dyn WallClock>) -> Bandwidth {
        Bandwidth {
            shared: Arc::new(Shared {
                clock,
                bucket: Mutex::new(Bucket {
                    configured: schedule,
                    over: None,
                    rate: None,
                    tat: Instant::now(),
                }),
                meter: Mutex::new(Meter::default()),
            }),
        }
    }

    /// A new configured schedule (start-up, reload): drops any run-time override.
    pub fn set_configured(&self, schedule: Schedule) {
        let mut b = self.lock();
        b.configured = schedule;
        b.over = None;
    }

    /// `scaidrivectl limit`: in force until the next reload or restart.
    pub fn set_override(&self, schedule: Schedule) {
        self.lock().over = Some(schedule);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        // The lock guards arithmetic only; a panic inside cannot leave it inconsistent.
        self.shared.bucket.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The rate in force now.
    pub fn rate_now(&self) -> Rate {
        let b = self.lock();
        b.over
            .as_ref()
            .unwrap_or(&b.configured)
            .rate_now(&*self.shared.clock)
    }

    pub fn snapshot(&self) -> Snapshot {
        let (schedule, source, limit) = {
            let b = self.lock();
            let (s, src) = match &b.over {
                Some(o) => (o, Source::Override),
                None => (&b.configured, Source::Config),
            };
            (s.to_string(), src, s.rate_now(&*self.shared.clock))
        };
        let current_bps = self
            .shared
            .meter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .rate(Instant::now());
        Snapshot {
            schedule,
            source,
            limit,
            current_bps,
        }
    }

    /// Reserves `n` bytes and waits until they may go (at once when there is no limit);
    /// meters them either way.
    pub async fn acquire(&self, n: u64) {
        let release = {
            let mut b = self.lock();
            let rate = b
                .over
                .as_ref()
                .unwrap_or(&b.configured)
                .rate_now(&*self.shared.clock);
            let now = Instant::now();
            if rate != b.rate {
                // Rescale what is queued at the old rate to the new one.
                if let (Some(old), Some(new)) = (b.rate, rate) {
                    let debt = b.tat.saturating_duration_since(now).as_secs_f64();
                    b.tat = now + Duration::from_secs_f64(debt * old as f64 / new as f64);
                } else {
                    b.tat = now;
                }
                b.rate = rate;
            }
            match rate {
                None => None,
                Some(r) => {
                    let tat = b.tat.max(now) + Duration::from_secs_f64(n as f64 / r as f64);
                    b.tat = tat;
                    Some(tat.checked_sub(BURST).unwrap_or(now).max(now))
                }
            }
        };
        if let Some(at) = release {
            tokio::time::sleep_until(at).await;
        }
        self.shared
            .meter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(Instant::now(), n);
    }

    /// The largest piece a body is cut into at the current rate.
    fn piece(&self) -> usize {
        match self.rate_now() {
            None => usize::MAX,
            Some(r) => ((r as f64 * PIECE_SECS) as usize).clamp(512, 64 * 1024),
        }
    }

    /// `inner` (a file body) passed through the limiter piece by piece.
    pub fn limit<S>(&self, inner: S) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin + 'static,
    {
        let me = self.clone();
        futures_util::stream::unfold(
            (inner, Bytes::new(), me),
            |(mut inner, mut pending, me)| async move {
                if pending.is_empty() {
                    match inner.next().await {
                        Some(Ok(b)) => pending = b,
                        Some(Err(e)) => return Some((Err(e), (inner, pending, me))),
                        None => return None,
                    }
                }
                let k = pending.len().min(me.piece());
                let part = pending.split_to(k);
                me.acquire(k as u64).await;
                Some((Ok(part), (inner, pending, me)))
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Mutex<LocalTime>);
    impl WallClock for Fixed {
        fn now(&self) -> LocalTime {
            *self.0.lock().unwrap()
        }
    }
    fn at(weekday: u8, h: u16, m: u16) -> LocalTime {
        LocalTime {
            weekday,
            minute: h * 60 + m,
        }
    }

    #[test]
    fn rates_parse_and_print() {
        let cases: &[(&str, Result<Rate, &str>)] = &[
            ("off", Ok(None)),
            ("OFF", Ok(None)),
            ("2MiB/s", Ok(Some(2 << 20))),
            ("500KiB/s", Ok(Some(500 << 10))),
            ("1.5 MB/s", Ok(Some(1_500_000))),
            ("1GiB/s", Ok(Some(1 << 30))),
            ("4096B/s", Ok(Some(4096))),
            ("2MiB", Err("not a rate")),
            ("fast", Err("not a rate")),
            ("10B/s", Err("at least 1KiB/s")),
            ("0MiB/s", Err("at least 1KiB/s")),
        ];
        for (text, want) in cases {
            match (parse_rate(text), want) {
                (Ok(got), Ok(w)) => assert_eq!(got, *w, "{text}"),
                (Err(e), Err(needle)) => assert!(e.contains(needle), "{text}: {e}"),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
        assert_eq!(format_rate(Some(2 << 20)), "2MiB/s");
        assert_eq!(format_rate(Some(1_500_000)), "1.43MiB/s");
        assert_eq!(format_rate(None), "off");
    }

    #[test]
    fn timetable_table() {
        let s = Schedule::parse("Mon-Fri 08:00-18:00 1MiB/s, Sat+Sun 22:00-06:00 off, 20MiB/s")
            .unwrap();
        let cases = [
            (at(0, 8, 0), Some(1 << 20)),
            (at(4, 17, 59), Some(1 << 20)),
            (at(4, 18, 0), Some(20 << 20)),
            (at(0, 7, 59), Some(20 << 20)),
            (at(5, 12, 0), Some(20 << 20)),
            (at(5, 23, 0), None),
            // Sunday 22:00 runs into Monday morning.
            (at(0, 5, 59), None),
            (at(0, 6, 0), Some(20 << 20)),
            // Saturday 03:00 belongs to Friday night's window only if Friday had one.
            (at(5, 3, 0), Some(20 << 20)),
            (at(6, 3, 0), None),
        ];
        for (t, want) in cases {
            assert_eq!(s.rate_at(t), want, "{t:?}");
        }
        assert_eq!(
            Schedule::parse("2MiB/s").unwrap().rate_at(at(2, 0, 0)),
            Some(2 << 20)
        );
        assert!(Schedule::parse("off").unwrap().is_off());
        for (bad, needle) in [
            ("Mon-Fri 08:00-18:00 1MiB/s", "last entry"),
            ("Mon-Fry 08:00-18:00 1MiB/s, off", "\"Fry\" is not a day"),
            ("Mon 8-18 1MiB/s, off", "not a time of day"),
            ("Mon 08:00-25:00 1MiB/s, off", "not a time of day"),
            ("Mon 08:00-08:00 1MiB/s, off", "empty"),
            ("Mon 08:00 1MiB/s, off", "not a time window"),
            ("Mon 08:00-09:00, off", "not \"[DAYS]"),
        ] {
            let e = Schedule::parse(bad).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn weekday_of_epoch_seconds() {
        // 2026-12-07 was a Monday; 12:34 UTC.
        let t = local_time_at(1_796_646_840);
        assert_eq!(t, at(0, 12, 34));
        assert_eq!(local_time_at(0), at(3, 0, 0));
    }

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    /// Central European rules as a POSIX TZ string: winter, summer, both switches to the
    /// second, and a date far past any transition table (the rule keeps applying).
    #[test]
    fn local_time_follows_the_zone_rules() {
        let cet = TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        let cases = [
            // 2026-01-15 12:00 UTC, a Thursday: 13:00 CET.
            (1_768_478_400, at(3, 13, 0)),
            // 2026-07-15 12:00 UTC, a Wednesday: 14:00 CEST.
            (1_784_116_800, at(2, 14, 0)),
            // 2026-03-29: 00:59 UTC is 01:59 CET, 01:00 UTC is 03:00 CEST (Sunday).
            (1_774_746_000 - 60, at(6, 1, 59)),
            (1_774_746_000, at(6, 3, 0)),
            // 2026-10-25: 00:59 UTC is 02:59 CEST, 01:00 UTC is 02:00 CET again.
            (1_792_890_000 - 60, at(6, 2, 59)),
            (1_792_890_000, at(6, 2, 0)),
            // 2100-07-15 12:00 UTC, a Thursday, still summer time.
            (4_119_336_000, at(3, 14, 0)),
        ];
        for (secs, want) in cases {
            assert_eq!(local_time_in(&cet, ts(secs)), want, "{secs}");
        }
        // A fixed offset west of UTC moves Monday 02:00 UTC back to Sunday 21:00.
        let est = TimeZone::fixed(jiff::tz::Offset::constant(-5));
        assert_eq!(local_time_in(&est, ts(1_796_608_800)), at(6, 21, 0));
        assert_eq!(
            local_time_in(&TimeZone::UTC, ts(1_796_608_800)),
            at(0, 2, 0)
        );
        // The timetable sees the zone's wall clock: 17:30 UTC in July is 19:30 CEST,
        // outside a Mon-Fri 08:00-18:00 window.
        let s = Schedule::parse("Mon-Fri 08:00-18:00 1MiB/s, off").unwrap();
        let july = 1_784_116_800 + 5 * 3600 + 30 * 60;
        assert_eq!(
            s.rate_at(local_time_in(&TimeZone::UTC, ts(july))),
            Some(1 << 20)
        );
        assert_eq!(s.rate_at(local_time_in(&cet, ts(july))), None);
    }

    /// The system's zoneinfo file for Berlin, read the way `TZ=Europe/Berlin` reads it.
    #[test]
    fn zoneinfo_file_summer_and_winter() {
        let Ok(b) = std::fs::read("/usr/share/zoneinfo/Europe/Berlin") else {
            println!("SKIPPED: no /usr/share/zoneinfo/Europe/Berlin");
            return;
        };
        let z = TimeZone::tzif("Europe/Berlin", &b).unwrap();
        assert_eq!(local_time_in(&z, ts(1_768_478_400)), at(3, 13, 0));
        assert_eq!(local_time_in(&z, ts(1_784_116_800)), at(2, 14, 0));
        // Past 2037, where fat files' tables end, the file's POSIX footer applies.
        assert_eq!(local_time_in(&z, ts(4_119_336_000)), at(3, 14, 0));
        assert!(TimeZone::tzif("x", b"nope").is_err());
    }

    /// Under paused time the bucket releases `rate × (T + burst)` at most in any window and
    /// nothing is lost or reordered.
    #[tokio::test(start_paused = true)]
    async fn smooth_and_bounded() {
        let clock = Arc::new(Fixed(Mutex::new(at(0, 12, 0))));
        let bw = Bandwidth::new(Schedule::parse("64KiB/s").unwrap(), clock);
        let start = Instant::now();
        let body: Vec<u8> = (0..256 * 1024u32).map(|i| i as u8).collect();
        let chunks: Vec<std::io::Result<Bytes>> = body
            .chunks(100_000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let s = bw.limit(futures_util::stream::iter(chunks));
        futures_util::pin_mut!(s);
        let mut got = Vec::new();
        let mut times = Vec::new();
        while let Some(b) = s.next().await {
            let b = b.unwrap();
            assert!(b.len() <= 4096, "pieces are a 16th of a second");
            times.push((start.elapsed(), b.len()));
            got.extend_from_slice(&b);
        }
        assert_eq!(got, body);
        let total = start.elapsed().as_secs_f64();
        // 256 KiB at 64 KiB/s: 4 s less the quarter second of burst.
        assert!((3.7..=3.8).contains(&total), "{total}");
        for w in 0..4 {
            let in_window: usize = times
                .iter()
                .filter(|(t, _)| t.as_secs_f64() >= w as f64 && t.as_secs_f64() < w as f64 + 1.0)
                .map(|(_, n)| n)
                .sum();
            assert!(in_window <= 80 * 1024, "window {w}: {in_window}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn schedule_switch_and_override_change_the_rate() {
        let clock = Arc::new(Fixed(Mutex::new(at(0, 17, 59))));
        let bw = Bandwidth::new(
            Schedule::parse("Mon-Fri 08:00-18:00 64KiB/s, 256KiB/s").unwrap(),
            clock.clone(),
        );
        let t0 = Instant::now();
        for _ in 0..16 {
            bw.acquire(4096).await;
        }
        let slow = t0.elapsed().as_secs_f64();
        assert!(
            (0.74..0.76).contains(&slow),
            "64 KiB at 64 KiB/s less burst: {slow}"
        );
        *clock.0.lock().unwrap() = at(0, 18, 0);
        assert_eq!(bw.rate_now(), Some(256 << 10));
        let t1 = Instant::now();
        for _ in 0..64 {
            bw.acquire(4096).await;
        }
        let fast = t1.elapsed().as_secs_f64();
        // The 64 KiB/s debt (a quarter second) rescaled to 1/16 s, then 256 KiB at
        // 256 KiB/s less the quarter second of burst: 0.8125 s.
        assert!((0.80..0.83).contains(&fast), "{fast}");
        bw.set_override(Schedule::off());
        let t2 = Instant::now();
        bw.acquire(10 << 20).await;
        assert!(t2.elapsed() < Duration::from_millis(1));
        let snap = bw.snapshot();
        assert_eq!((snap.source, snap.limit), (Source::Override, None));
        bw.set_configured(Schedule::parse("1MiB/s").unwrap());
        let snap = bw.snapshot();
        assert_eq!((snap.source, snap.limit), (Source::Config, Some(1 << 20)));
        assert!(snap.current_bps > 0);
    }
}
