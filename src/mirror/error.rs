//! The mirror engine's error type: what stopped a step of the engine (start-up, settling
//! the journal, adopting a remote tree), with the step as context and a kind to branch on.
//! Whether a failed start is waited out or stops the mirror is [`MirrorError::kind`],
//! decided here from the cause and nowhere else.

use crate::remote;
use crate::store::StoreError;

/// What the engine does about an error; the coarse branch for the conductor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The remote was unreachable or refused for now (5xx, 429, dropped connection):
    /// the step is tried again later.
    Transient,
    /// The credentials were refused: waits for new ones (a reload, HUP).
    Credentials,
    /// Anything else: the mirror stops with the error as its reason.
    Fatal,
}

/// The cause of a [`MirrorError`].
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    #[error(transparent)]
    Remote(#[from] remote::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ignore(#[from] crate::watch::IgnoreError),
    /// A blocking task of the engine (a scan, the watcher's set-up) panicked or was
    /// cancelled.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

/// An error of the mirror engine. `Display` is one line: the step, then the cause
/// (`remote base folder "backup": POST /api/v1/folders: HTTP 503 ...`).
#[derive(Debug)]
pub struct MirrorError {
    // Boxed: errors travel through every `Result` of the engine, and most are `Ok`.
    d: Box<Details>,
}

#[derive(Debug)]
struct Details {
    context: Option<String>,
    cause: Cause,
}

impl std::error::Error for MirrorError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.d.cause)
    }
}

impl MirrorError {
    /// The error with the step it stopped, for the log and the status line.
    pub fn context(mut self, context: impl Into<String>) -> MirrorError {
        self.d.context = Some(context.into());
        self
    }

    pub fn kind(&self) -> ErrorKind {
        match &self.d.cause {
            Cause::Remote(e) if e.kind() == remote::ErrorKind::CredentialsNeeded => {
                ErrorKind::Credentials
            }
            Cause::Remote(e) if e.is_transient() => ErrorKind::Transient,
            _ => ErrorKind::Fatal,
        }
    }

    pub fn cause(&self) -> &Cause {
        &self.d.cause
    }
}

impl std::fmt::Display for MirrorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.d.context {
            Some(c) => write!(f, "{c}: {}", self.d.cause),
            None => write!(f, "{}", self.d.cause),
        }
    }
}

macro_rules! from_cause {
    ($($t:ty),*) => {$(
        impl From<$t> for MirrorError {
            fn from(e: $t) -> MirrorError {
                MirrorError { d: Box::new(Details { context: None, cause: e.into() }) }
            }
        }
    )*};
}
from_cause!(
    remote::Error,
    StoreError,
    crate::watch::IgnoreError,
    tokio::task::JoinError
);

/// `.context("…")` on any result whose error converts into a [`MirrorError`].
pub trait Context<T> {
    fn context(self, context: impl Into<String>) -> Result<T, MirrorError>;
}

impl<T, E: Into<MirrorError>> Context<T> for Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T, MirrorError> {
        self.map_err(|e| e.into().context(context))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_one_line_display() {
        let e: MirrorError = StoreError::Closed.into();
        assert_eq!(e.kind(), ErrorKind::Fatal);
        assert_eq!(e.to_string(), "state database is closed");
        let e = Err::<(), _>(StoreError::Closed)
            .context("loading entries")
            .unwrap_err();
        assert_eq!(e.to_string(), "loading entries: state database is closed");
        assert!(std::error::Error::source(&e).is_some());
    }
}
