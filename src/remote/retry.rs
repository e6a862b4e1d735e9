//! The retry policy: the one place that decides whether a failed request is tried again,
//! and after how long. Every request of the client goes through [`run`].
//!
//! - 429: wait `Retry-After` (header, else `error.retry_after`) with ±20 % jitter, as the
//!   rate-limiting page recommends; the shared pacer is paused for the exact wait so every
//!   worker holds off, not only the one that was refused. At most
//!   [`RetryPolicy::max_rate_limited_retries`] 429s in a row (documented: 3).
//! - 5xx (500/502/503/504), 408, connect errors, timeouts, dropped connections: capped
//!   exponential backoff with jitter, at most [`RetryPolicy::max_attempts`] attempts.
//! - Everything else is permanent and returned at once (which errors are transient is
//!   [`Error::is_transient`]'s call, never string matching).
//!
//! The operation is a closure called once per attempt, so a body that streams from a file
//! is rebuilt (the file re-opened) for each attempt.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use super::error::Error;
use super::pace::{Pacer, RateDimension};

/// How hard to try. The defaults follow the docs (3 rate-limit retries) and the seed
/// walkthrough (4 attempts for 5xx, exponential), with a cap so a long outage does not
/// stall a worker for minutes on one request.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in total (first try included) for 5xx and transport errors.
    pub max_attempts: u32,
    /// 429s in a row after which we give up (the documented recommendation is 3).
    pub max_rate_limited_retries: u32,
    /// First backoff step; doubles per attempt.
    pub base_delay: Duration,
    /// Upper bound of one backoff step.
    pub max_delay: Duration,
    /// Wait after a 429 that names no wait at all.
    pub default_retry_after: Duration,
    /// A `Retry-After` longer than this is not slept through: the error is returned
    /// (still transient) so the caller can reschedule the work instead of blocking.
    pub max_retry_after: Duration,
    /// Relative jitter on rate-limit waits (0.2 = ±20 %).
    pub rate_limit_jitter: f64,
    /// Give up after this many transport failures (no usable response) even if
    /// `max_attempts` allows more; `None` = only `max_attempts` counts. A multipart upload
    /// sets it: after two broken transfers of one file a resumable session, which keeps
    /// what got through, serves better than sending the whole body again.
    pub max_transport_failures: Option<u32>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            max_rate_limited_retries: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            default_retry_after: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(300),
            rate_limit_jitter: 0.2,
            max_transport_failures: None,
        }
    }
}

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decision {
    /// Try again after this long.
    Retry(Duration),
    /// Return the error.
    GiveUp,
}

impl RetryPolicy {
    /// `attempts` is how many attempts have been made (≥ 1); `rate_limited_in_a_row` how
    /// many of the latest ones were 429s (including this one).
    pub fn decide(
        &self,
        err: &Error,
        attempts: u32,
        rate_limited_in_a_row: u32,
        rng: &mut impl Rng,
    ) -> Decision {
        if !err.is_transient() {
            return Decision::GiveUp;
        }
        if err.status().is_some_and(|s| s.as_u16() == 429) {
            if rate_limited_in_a_row > self.max_rate_limited_retries {
                return Decision::GiveUp;
            }
            let wait = err.retry_after().unwrap_or(self.default_retry_after);
            if wait > self.max_retry_after {
                return Decision::GiveUp;
            }
            return Decision::Retry(self.rate_limit_wait(wait, rng));
        }
        if attempts >= self.max_attempts {
            return Decision::GiveUp;
        }
        Decision::Retry(self.backoff(attempts, rng))
    }

    /// `wait` ±jitter: spreads the workers that were refused together.
    pub fn rate_limit_wait(&self, wait: Duration, rng: &mut impl Rng) -> Duration {
        let j = self.rate_limit_jitter.clamp(0.0, 1.0);
        let factor = if j > 0.0 {
            rng.random_range(1.0 - j..=1.0 + j)
        } else {
            1.0
        };
        wait.mul_f64(factor)
    }

    /// "Equal jitter" backoff after attempt `attempts` (1-based): half of the capped
    /// exponential step fixed, half random, so waits grow but never synchronise.
    pub fn backoff(&self, attempts: u32, rng: &mut impl Rng) -> Duration {
        let exp = attempts.saturating_sub(1).min(30);
        let step = self
            .base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay);
        let half = step / 2;
        half + half.mul_f64(rng.random_range(0.0..=1.0))
    }
}

/// Runs `op` (called with the 1-based attempt number) until it succeeds, fails
/// permanently, or the policy gives up. On 429 the shared pacer is paused so all workers
/// wait, not only this one.
pub async fn run<T, F, Fut>(policy: &RetryPolicy, pacer: &Pacer, mut op: F) -> Result<T, Error>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut attempts = 0u32;
    let mut rate_limited_in_a_row = 0u32;
    let mut transport_failures = 0u32;
    loop {
        attempts += 1;
        let err = match op(attempts).await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if err.is_transient_transport() {
            transport_failures += 1;
            if policy
                .max_transport_failures
                .is_some_and(|max| transport_failures >= max)
            {
                return Err(err);
            }
        }
        let is_429 = err.status().is_some_and(|s| s.as_u16() == 429);
        rate_limited_in_a_row = if is_429 { rate_limited_in_a_row + 1 } else { 0 };
        let decision = policy.decide(&err, attempts, rate_limited_in_a_row, &mut rand::rng());
        match decision {
            Decision::GiveUp => return Err(err),
            Decision::Retry(wait) => {
                if is_429 {
                    // The user's or tenant's budget is waited out like the token's.
                    let dim = err.rate_dimension().unwrap_or(RateDimension::Token);
                    pacer.pause_for(err.retry_after().unwrap_or(policy.default_retry_after), dim);
                }
                tracing::debug!(error = %err, attempt = attempts, wait_ms = wait.as_millis() as u64, "retrying");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};
    use reqwest::{Method, StatusCode};

    fn http(status: u16, retry_after: Option<&str>, body: &str) -> Error {
        let mut h = HeaderMap::new();
        if let Some(r) = retry_after {
            h.insert("retry-after", HeaderValue::from_str(r).unwrap());
        }
        Error::from_response(
            &Method::GET,
            "/x",
            StatusCode::from_u16(status).unwrap(),
            &h,
            body.as_bytes(),
        )
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn classification_table() {
        let p = policy();
        let mut rng = rand::rng();
        let permanent = [400, 401, 403, 404, 409, 410, 413, 422, 507];
        for s in permanent {
            assert_eq!(
                p.decide(&http(s, None, ""), 1, 0, &mut rng),
                Decision::GiveUp,
                "status {s}"
            );
        }
        for s in [500, 502, 503, 504] {
            assert!(
                matches!(
                    p.decide(&http(s, None, ""), 1, 0, &mut rng),
                    Decision::Retry(_)
                ),
                "status {s}"
            );
            assert_eq!(
                p.decide(&http(s, None, ""), p.max_attempts, 0, &mut rng),
                Decision::GiveUp,
                "status {s}"
            );
        }
    }

    #[test]
    fn rate_limit_wait_is_within_twenty_percent() {
        let p = policy();
        let mut rng = rand::rng();
        let e = http(429, Some("10"), "");
        let mut seen_low = false;
        let mut seen_high = false;
        for _ in 0..2000 {
            let Decision::Retry(w) = p.decide(&e, 1, 1, &mut rng) else {
                panic!("429 must be retried")
            };
            assert!(
                w >= Duration::from_secs(8) && w <= Duration::from_secs(12),
                "{w:?}"
            );
            seen_low |= w < Duration::from_millis(9500);
            seen_high |= w > Duration::from_millis(10500);
        }
        assert!(seen_low && seen_high, "jitter spreads both ways");
    }

    #[test]
    fn rate_limit_uses_body_retry_after_then_default() {
        let p = RetryPolicy {
            rate_limit_jitter: 0.0,
            ..policy()
        };
        let mut rng = rand::rng();
        let body =
            r#"{"status":"error","error":{"code":"RATE_LIMITED","message":"m","retry_after":7}}"#;
        assert_eq!(
            p.decide(&http(429, None, body), 1, 1, &mut rng),
            Decision::Retry(Duration::from_secs(7))
        );
        assert_eq!(
            p.decide(&http(429, None, ""), 1, 1, &mut rng),
            Decision::Retry(p.default_retry_after)
        );
    }

    #[test]
    fn rate_limit_gives_up_after_bounded_retries_or_huge_waits() {
        let p = policy();
        let mut rng = rand::rng();
        let e = http(429, Some("1"), "");
        assert!(
            matches!(p.decide(&e, 9, 3, &mut rng), Decision::Retry(_)),
            "429s do not use the 5xx budget"
        );
        assert_eq!(p.decide(&e, 4, 4, &mut rng), Decision::GiveUp);
        assert_eq!(
            p.decide(&http(429, Some("3600"), ""), 1, 1, &mut rng),
            Decision::GiveUp
        );
    }

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        let p = policy();
        let mut rng = rand::rng();
        for attempt in 1..=12u32 {
            let step = (p.base_delay * 2u32.pow(attempt - 1)).min(p.max_delay);
            for _ in 0..200 {
                let d = p.backoff(attempt, &mut rng);
                assert!(
                    d >= step / 2 && d <= step,
                    "attempt {attempt}: {d:?} not in [{:?}, {step:?}]",
                    step / 2
                );
            }
        }
        assert!(
            p.backoff(40, &mut rng) <= p.max_delay,
            "no overflow for huge attempt numbers"
        );
    }

    #[tokio::test]
    async fn run_retries_transient_then_succeeds_and_stops_on_permanent() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            ..policy()
        };
        let pacer = Pacer::new(Default::default());
        let mut calls = 0;
        let r: Result<u32, Error> = run(&p, &pacer, |attempt| {
            calls += 1;
            async move {
                if attempt < 3 {
                    Err(http(503, None, ""))
                } else {
                    Ok(attempt)
                }
            }
        })
        .await;
        assert_eq!(r.unwrap(), 3);
        assert_eq!(calls, 3);

        let mut calls = 0;
        let r: Result<(), Error> = run(&p, &pacer, |_| {
            calls += 1;
            async { Err(http(404, None, "")) }
        })
        .await;
        assert_eq!(r.unwrap_err().status(), Some(StatusCode::NOT_FOUND));
        assert_eq!(calls, 1, "permanent errors are not retried");

        let mut calls = 0;
        let r: Result<(), Error> = run(&p, &pacer, |_| {
            calls += 1;
            async { Err(http(500, None, "")) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls, p.max_attempts, "bounded attempts");
    }
}
