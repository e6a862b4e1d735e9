//! Credentials: the bearer token, the optional single-use rotating refresh token, and the
//! hand-off of a refreshed pair to whoever persists it.
//!
//! Tokens live in [`Secret`], whose `Debug` and `Display` print `***`, so no log line,
//! panic message or `{:?}` of a config can leak one. The refresh itself (one per logical
//! request, single-flight across workers) is driven by the client in `mod.rs`; this module
//! holds the state it works on.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::RwLock;

/// A string that must never be shown: `Debug`/`Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The secret value, for the one place that needs it (a request header or form).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret::new(s)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

/// An access token and, when configured, the refresh token that renews it.
#[derive(Clone, Debug)]
pub struct TokenPair {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    /// Seconds the access token is valid for, as the token endpoint said.
    pub expires_in: Option<u64>,
}

impl TokenPair {
    pub fn bearer(access: impl Into<Secret>) -> TokenPair {
        TokenPair {
            access_token: access.into(),
            refresh_token: None,
            expires_in: None,
        }
    }
    pub fn with_refresh(access: impl Into<Secret>, refresh: impl Into<Secret>) -> TokenPair {
        TokenPair {
            access_token: access.into(),
            refresh_token: Some(refresh.into()),
            expires_in: None,
        }
    }
}

/// A boxed future for [`TokenSink::persist`] (object-safe async).
pub type PersistFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Receives every refreshed pair. The old refresh token is already spent when this is
/// called, so the implementation must store the new pair durably and atomically (the
/// store actor writes both tokens in one transaction). An error is logged; the client
/// keeps using the new pair in memory.
pub trait TokenSink: Send + Sync + 'static {
    fn persist<'a>(&'a self, pair: &'a TokenPair) -> PersistFuture<'a>;
}

/// The live token pair plus a generation counter that tells a worker whether someone
/// else already refreshed after its request was sent.
#[derive(Debug)]
pub(crate) struct AuthState {
    inner: RwLock<(TokenPair, u64)>,
}

impl AuthState {
    pub(crate) fn new(pair: TokenPair) -> AuthState {
        AuthState {
            inner: RwLock::new((pair, 0)),
        }
    }
    /// The access token to send and its generation.
    pub(crate) fn current(&self) -> (Secret, u64) {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        (g.0.access_token.clone(), g.1)
    }
    pub(crate) fn refresh_token(&self) -> Option<Secret> {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .refresh_token
            .clone()
    }
    pub(crate) fn generation(&self) -> u64 {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).1
    }
    pub(crate) fn replace(&self, pair: TokenPair) {
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        g.0 = pair;
        g.1 += 1;
    }
    pub(crate) fn pair(&self) -> TokenPair {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let pair = TokenPair::with_refresh("sdat_supersecret", "rt_alsosecret");
        let dbg = format!("{pair:?} {:?} {}", pair.access_token, pair.access_token);
        assert!(
            !dbg.contains("supersecret") && !dbg.contains("alsosecret"),
            "{dbg}"
        );
        assert!(dbg.contains("***"));
        assert_eq!(pair.access_token.expose(), "sdat_supersecret");
        let state = AuthState::new(pair);
        assert!(!format!("{state:?}").contains("secret"));
    }

    #[test]
    fn replace_bumps_generation() {
        let state = AuthState::new(TokenPair::bearer("a"));
        let (tok, g) = state.current();
        assert_eq!((tok.expose(), g), ("a", 0));
        state.replace(TokenPair::with_refresh("b", "r"));
        assert_eq!(state.generation(), 1);
        assert_eq!(state.current().0.expose(), "b");
        assert_eq!(state.refresh_token().unwrap().expose(), "r");
    }
}
