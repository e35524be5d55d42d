//! Bounded retries with jittered exponential backoff for calls to a platform's API.
//!
//! The loop is generic over the error ([`Attempt`] says how an error may be followed); for the
//! Kubernetes API (`kube::Error`):
//! retried: 429 and 5xx answers (500, 502, 503, 504), transport errors (reset, refused) and
//! stalls (an attempt that does not answer within its own timeout). A 429's
//! `details.retryAfterSeconds` (what the API server puts beside its `Retry-After` header) is
//! honoured as the minimum wait, capped by [`Backoff::max_retry_after`]. Anything else (404,
//! 403, 409...) is returned at once. The caller decides what an error means: after a failed
//! or stalled mutating call the outcome is unknown, and the drill treats it as maybe applied.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Attempts in all, the first included.
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
    /// An attempt that takes longer than this has stalled.
    pub attempt_timeout: Duration,
    pub max_retry_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            attempts: 4,
            base: Duration::from_millis(200),
            max: Duration::from_secs(3),
            attempt_timeout: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(10),
        }
    }
}

/// How a failed attempt may be followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Try again, waiting at least this long (the server said so).
    Retry(Option<Duration>),
    Fatal,
}

/// What the retry loop needs to know about a failed attempt.
pub trait Attempt {
    fn verdict(&self) -> Verdict;
    /// Whether the attempt may have been applied although it failed (a 5xx, a reset): for a
    /// mutating call its outcome is then unknown.
    fn maybe_applied(&self) -> bool;
    /// For people: what the attempt got.
    fn describe(&self) -> String;
}

impl Attempt for kube::Error {
    fn verdict(&self) -> Verdict {
        classify(self)
    }

    fn maybe_applied(&self) -> bool {
        !matches!(self, kube::Error::Api(s) if s.code == 429)
    }

    fn describe(&self) -> String {
        super::kube::describe(self)
    }
}

pub fn classify(e: &kube::Error) -> Verdict {
    match e {
        kube::Error::Api(s) => match s.code {
            429 => Verdict::Retry(
                s.details
                    .as_ref()
                    .map(|d| d.retry_after_seconds)
                    .filter(|&n| n > 0)
                    .map(|n| Duration::from_secs(n.into())),
            ),
            500 | 502 | 503 | 504 => Verdict::Retry(None),
            _ => Verdict::Fatal,
        },
        kube::Error::HyperError(_) | kube::Error::Service(_) => Verdict::Retry(None),
        _ => Verdict::Fatal,
    }
}

impl Backoff {
    /// The wait before attempt `n + 1` (n ≥ 1): full jitter over an exponential ceiling, and
    /// never less than what the server asked for.
    pub fn delay(&self, n: u32, retry_after: Option<Duration>, rng: &mut impl Rng) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << n.saturating_sub(1).min(16))
            .min(self.max);
        let jittered = ceiling.mul_f64(rng.random_range(0.5..=1.0));
        match retry_after {
            Some(ra) => jittered.max(ra.min(self.max_retry_after)),
            None => jittered,
        }
    }
}

/// Why the calls gave up.
#[derive(Debug)]
pub struct Failed<E = kube::Error> {
    /// What the last attempt got.
    pub error: String,
    /// The last attempt's error, when it answered (a stall has none).
    pub last: Option<E>,
    pub attempts: u32,
    /// Whether an earlier attempt failed in a way that may have been applied (5xx, reset,
    /// stall): for a mutating call, its outcome is unknown.
    pub uncertain: bool,
}

impl<E> std::fmt::Display for Failed<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.attempts > 1 {
            write!(f, "{} (after {} attempts)", self.error, self.attempts)
        } else {
            write!(f, "{}", self.error)
        }
    }
}

/// The message already carries the last attempt's error, so it is not repeated as a source.
impl<E: std::fmt::Debug> std::error::Error for Failed<E> {}

/// Calls `op` until it succeeds, fails for good, or the attempts are spent.
pub async fn retry<T, E, Fut>(
    what: &str,
    policy: &Backoff,
    mut op: impl FnMut() -> Fut,
) -> Result<T, Failed<E>>
where
    E: Attempt,
    Fut: Future<Output = Result<T, E>>,
{
    let mut uncertain = false;
    let mut n = 0;
    loop {
        n += 1;
        let (error, last, retry_after, retryable) =
            match tokio::time::timeout(policy.attempt_timeout, op()).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => {
                    let text = e.describe();
                    let maybe_applied = e.maybe_applied();
                    match e.verdict() {
                        Verdict::Retry(ra) => {
                            uncertain |= maybe_applied;
                            (text, Some(e), ra, true)
                        }
                        Verdict::Fatal => (text, Some(e), None, false),
                    }
                }
                Err(_) => {
                    uncertain = true;
                    (
                        format!("no answer within {:?}", policy.attempt_timeout),
                        None,
                        None,
                        true,
                    )
                }
            };
        if !retryable || n >= policy.attempts {
            return Err(Failed {
                error,
                last,
                attempts: n,
                uncertain,
            });
        }
        let wait = policy.delay(n, retry_after, &mut rand::rng());
        tracing::warn!(what, attempt = n, error = %error, wait = ?wait, "retrying");
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn api(code: u16, retry_after: u32) -> kube::Error {
        let mut s = kube::core::Status::failure("x", "y").with_code(code);
        if retry_after > 0 {
            s.details =
                serde_json::from_value(serde_json::json!({ "retryAfterSeconds": retry_after }))
                    .ok();
        }
        kube::Error::Api(s.boxed())
    }

    #[test]
    fn only_overload_and_server_errors_are_retried_and_retry_after_is_honoured() {
        assert_eq!(
            classify(&api(429, 2)),
            Verdict::Retry(Some(Duration::from_secs(2)))
        );
        assert_eq!(classify(&api(503, 0)), Verdict::Retry(None));
        assert_eq!(classify(&api(404, 0)), Verdict::Fatal);
        assert_eq!(classify(&api(403, 0)), Verdict::Fatal);
        let b = Backoff::default();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for n in 1..10 {
            let d = b.delay(n, None, &mut rng);
            assert!(d <= b.max && d >= b.base / 2, "{n}: {d:?}");
        }
        assert!(b.delay(1, Some(Duration::from_secs(2)), &mut rng) >= Duration::from_secs(2));
        assert!(b.delay(1, Some(Duration::from_secs(600)), &mut rng) <= b.max_retry_after);
    }

    #[tokio::test]
    async fn gives_up_after_the_attempts_and_says_the_outcome_is_unknown() {
        let quick = Backoff {
            base: Duration::from_millis(1),
            max: Duration::from_millis(5),
            attempt_timeout: Duration::from_millis(50),
            ..Backoff::default()
        };
        let calls = std::sync::atomic::AtomicU32::new(0);
        let r: Result<(), Failed> = retry("delete", &quick, || {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { Err(api(503, 0)) }
        })
        .await;
        let f = r.unwrap_err();
        assert_eq!(f.attempts, 4);
        assert!(f.uncertain);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 4);
        // A stall counts as an attempt whose outcome is unknown.
        let r: Result<(), Failed> = retry("delete", &quick, || async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        })
        .await;
        assert!(r.unwrap_err().uncertain);
    }
}
