//! The local time zone's UTC offset, for the bandwidth timetable, read from the system's
//! TZif data (`TZ=Area/City` or `TZ=:/path`, else `/etc/localtime`) without calling into
//! libc (the standard library and `time` offer no thread-safe local offset on Linux).
//!
//! Offsets come from the file's transition table (the 64-bit one of version 2+ files).
//! After the last transition the file's last offset stays in force: Debian and most
//! distributions ship "fat" files listing transitions up to 2037. No `/etc/localtime` is
//! UTC; a zone that cannot be read or parsed is UTC with a warning in the log. The zone is
//! read once, when a timetable first needs it.

use std::path::{Path, PathBuf};

/// Transitions (UTC seconds, offset in seconds) in time order, and the offset before the
/// first one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Zone {
    transitions: Vec<(i64, i64)>,
    initial: i64,
}

impl Zone {
    pub fn utc() -> Zone {
        Zone::default()
    }

    /// The system's zone (see the module doc).
    pub fn system() -> Zone {
        let path = match std::env::var("TZ") {
            Ok(tz) if !tz.is_empty() => {
                let tz = tz.trim_start_matches(':');
                if tz.starts_with('/') {
                    PathBuf::from(tz)
                } else if tz == "UTC" || tz == "UTC0" {
                    return Zone::utc();
                } else {
                    Path::new("/usr/share/zoneinfo").join(tz)
                }
            }
            _ => PathBuf::from("/etc/localtime"),
        };
        let problem = match std::fs::read(&path) {
            Ok(b) => match Zone::parse(&b) {
                Ok(z) => return z,
                Err(e) => e,
            },
            // No /etc/localtime is how minimal systems say UTC.
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound && std::env::var_os("TZ").is_none() =>
            {
                return Zone::utc();
            }
            Err(e) => e.to_string(),
        };
        tracing::warn!(
            "local time zone {}: {problem}; the bandwidth timetable uses UTC",
            path.display()
        );
        Zone::utc()
    }

    /// Parses TZif data (RFC 8536).
    pub fn parse(b: &[u8]) -> Result<Zone, String> {
        let header = |at: usize| -> Result<(u8, [usize; 6]), String> {
            if b.len() < at + 44 || &b[at..at + 4] != b"TZif" {
                return Err("not TZif data".into());
            }
            let n = |i: usize| {
                let o = at + 20 + 4 * i;
                u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]) as usize
            };
            // isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt
            Ok((b[at + 4], [n(0), n(1), n(2), n(3), n(4), n(5)]))
        };
        let (version, c) = header(0)?;
        let v1_len = c[3] * 5 + c[4] * 6 + c[5] + c[2] * 8 + c[1] + c[0];
        let (at, time_size, c) = if version >= b'2' {
            let at = 44 + v1_len;
            (at + 44, 8, header(at)?.1)
        } else {
            (44, 4, c)
        };
        let [_, _, _, timecnt, typecnt, _] = c;
        let need = at + timecnt * (time_size + 1) + typecnt * 6;
        if b.len() < need || typecnt == 0 {
            return Err("truncated TZif data".into());
        }
        let time = |i: usize| -> i64 {
            let o = at + i * time_size;
            if time_size == 8 {
                i64::from_be_bytes(b[o..o + 8].try_into().expect("8 bytes"))
            } else {
                i64::from(i32::from_be_bytes(b[o..o + 4].try_into().expect("4 bytes")))
            }
        };
        let idx_at = at + timecnt * time_size;
        let types_at = idx_at + timecnt;
        let offset = |t: usize| -> Result<i64, String> {
            if t >= typecnt {
                return Err("TZif type index out of range".into());
            }
            let o = types_at + t * 6;
            Ok(i64::from(i32::from_be_bytes(
                b[o..o + 4].try_into().expect("4 bytes"),
            )))
        };
        let mut transitions = Vec::with_capacity(timecnt);
        for i in 0..timecnt {
            transitions.push((time(i), offset(usize::from(b[idx_at + i]))?));
        }
        Ok(Zone {
            transitions,
            initial: offset(0)?,
        })
    }

    /// The offset from UTC (seconds) in force at `utc` (seconds since the epoch).
    pub fn offset_at(&self, utc: i64) -> i64 {
        match self.transitions.partition_point(|(t, _)| *t <= utc) {
            0 => self.initial,
            i => self.transitions[i - 1].1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn berlin_summer_and_winter() {
        let Ok(b) = std::fs::read("/usr/share/zoneinfo/Europe/Berlin") else {
            println!("SKIPPED: no /usr/share/zoneinfo/Europe/Berlin");
            return;
        };
        let z = Zone::parse(&b).unwrap();
        // 2026-01-15 and 2026-07-15, noon UTC.
        assert_eq!(z.offset_at(1_768_478_400), 3600);
        assert_eq!(z.offset_at(1_784_116_800), 7200);
        assert!(Zone::parse(b"nope").is_err());
        assert_eq!(Zone::utc().offset_at(1_784_116_800), 0);
    }
}
