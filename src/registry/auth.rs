//! The registry's authentication: `WWW-Authenticate` challenges, and the bearer-token flow of the
//! Docker registry token specification (a token from the challenge's realm, per scope, cached
//! until it expires).
//!
//! Written here rather than taken from a crate: the registry client on crates.io (`oci-client`,
//! formerly `oci-distribution`) is async on its own HTTP stack, while imgbuild is synchronous
//! over `ureq`; the flow itself is a challenge parser and one request to the realm.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::client::Access;

/// One challenge of a `WWW-Authenticate` header: its scheme (lower case) and parameters (names
/// lower case, values unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The value of the parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a `WWW-Authenticate` value (RFC 7235): challenges separated by commas, each a scheme
/// followed by `name=value` parameters (a token or a quoted string with `\` escapes). Malformed
/// text ends the parse; what was read before it is kept.
pub(super) fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let mut chars = header.chars().peekable();
    let is_token = |c: char| !c.is_whitespace() && c != ',' && c != '=' && c != '"';
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut word = String::new();
        while let Some(&c) = chars.peek().filter(|c| is_token(**c)) {
            word.push(c);
            chars.next();
        }
        if word.is_empty() {
            return out;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() == Some(&'=') {
            // A parameter of the current challenge (token68 values are not used by registries).
            chars.next();
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            let mut value = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                loop {
                    match chars.next() {
                        Some('\\') => value.extend(chars.next()),
                        Some('"') | None => break,
                        Some(c) => value.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek().filter(|c| is_token(**c)) {
                    value.push(c);
                    chars.next();
                }
            }
            match out.last_mut() {
                Some(ch) => ch.params.push((word.to_ascii_lowercase(), value)),
                None => return out,
            }
        } else {
            out.push(Challenge {
                scheme: word.to_ascii_lowercase(),
                params: Vec::new(),
            });
        }
    }
}

/// The challenges of every `WWW-Authenticate` header of `resp`.
pub(super) fn challenges(resp: &ureq::http::Response<ureq::Body>) -> Vec<Challenge> {
    resp.headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(parse_challenges)
        .collect()
}

/// Where a registry that uses bearer tokens sends its clients for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Realm {
    /// The token server's URL.
    pub url: String,
    /// The `service` parameter the token server expects.
    pub service: Option<String>,
}

/// How the registry wants requests authorized, as learnt from its challenges.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) enum Scheme {
    /// Not known yet (no challenge seen): requests go without authorization.
    #[default]
    Unknown,
    /// Basic auth with the credentials.
    Basic,
    /// Bearer tokens from a token server.
    Bearer(Realm),
}

/// The token-auth scopes `access` needs: none for the ping, `repository:REPO:pull` or
/// `repository:REPO:pull,push`.
pub(super) fn scope(access: &Access<'_>) -> Option<String> {
    let scopes = scopes(access);
    (!scopes.is_empty()).then(|| scopes.join(" "))
}

/// Each scope a token for `access` must grant (a mount needs two repositories).
pub(super) fn scopes(access: &Access<'_>) -> Vec<String> {
    match access {
        Access::Ping => Vec::new(),
        Access::Pull(repo) => vec![format!("repository:{repo}:pull")],
        Access::Push(repo) => vec![format!("repository:{repo}:pull,push")],
        Access::Mount { repo, from } => vec![
            format!("repository:{repo}:pull,push"),
            format!("repository:{from}:pull"),
        ],
    }
}

/// A bearer token and when it stops being used. `Debug` does not show the token.
#[derive(Clone)]
pub(super) struct Token {
    pub value: String,
    pub expires: SystemTime,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// The token server's answer (`token`, or `access_token` as in `OAuth2`).
#[derive(serde::Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
    issued_at: Option<String>,
}

/// The lifetime the token specification gives a token whose answer names none.
const DEFAULT_LIFETIME: u64 = 60;

/// Reads the token server's JSON answer, received at `now`. The token is used until shortly
/// before `issued_at` (else `now`) plus `expires_in`, whichever of the two ends first, so a
/// token server whose clock runs ahead cannot make imgbuild keep a token too long.
pub(super) fn read_token(body: &[u8], now: SystemTime) -> Option<Token> {
    let answer: TokenAnswer = serde_json::from_slice(body).ok()?;
    let value = answer
        .token
        .filter(|t| !t.is_empty())
        .or(answer.access_token)
        .filter(|t| !t.is_empty())?;
    let life = Duration::from_secs(answer.expires_in.unwrap_or(DEFAULT_LIFETIME).max(1));
    // A margin so that a token is not sent in its last seconds: a tenth of its life, at most 10 s.
    let life = life.saturating_sub((life / 10).min(Duration::from_secs(10)));
    let mut expires = now + life;
    if let Some(issued) = answer
        .issued_at
        .as_deref()
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
    {
        expires = expires.min(issued + life);
    }
    Some(Token { value, expires })
}

/// Tokens by scope (the key: the scope, empty for the ping's), and the registry's scheme.
#[derive(Debug, Default)]
pub(super) struct AuthState {
    scheme: Mutex<Scheme>,
    tokens: Mutex<HashMap<String, Token>>,
}

impl AuthState {
    /// The scheme learnt so far.
    pub fn scheme(&self) -> Scheme {
        self.scheme
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Records the scheme the registry asked for.
    pub fn set_scheme(&self, scheme: Scheme) {
        *self
            .scheme
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = scheme;
    }

    /// A token for `access` that is still valid at `now`: the one of its scope, or for a pull
    /// the push token of the same repository, or for the ping any token.
    pub fn cached(&self, access: &Access<'_>, now: SystemTime) -> Option<String> {
        let tokens = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let valid = |key: &str| {
            tokens
                .get(key)
                .filter(|t| t.expires > now)
                .map(|t| t.value.clone())
        };
        match access {
            Access::Ping => valid("").or_else(|| {
                tokens
                    .values()
                    .find(|t| t.expires > now)
                    .map(|t| t.value.clone())
            }),
            Access::Pull(repo) => valid(&format!("repository:{repo}:pull"))
                .or_else(|| valid(&format!("repository:{repo}:pull,push"))),
            Access::Push(_) | Access::Mount { .. } => valid(&scope(access).unwrap_or_default()),
        }
    }

    /// Keeps `token` for `access`'s scope.
    pub fn store(&self, access: &Access<'_>, token: Token) {
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(scope(access).unwrap_or_default(), token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic_challenges() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.example.org/token",service="registry.example.org",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.example.org/token"));
        assert_eq!(c[0].param("service"), Some("registry.example.org"));
        assert_eq!(c[0].param("scope"), Some("repository:a/b:pull,push"));

        let c = parse_challenges(r#"Basic realm="Registry Realm""#);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some("Registry Realm"));

        // Several challenges, unquoted values, spaces, escapes, an error parameter.
        let c = parse_challenges(
            r#"Basic realm=test , BEARER Realm = "http://127.0.0.1:1/t?x=\"y\"", service=reg, error="insufficient_scope""#,
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].param("realm"), Some("test"));
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(c[1].param("realm"), Some(r#"http://127.0.0.1:1/t?x="y""#));
        assert_eq!(c[1].param("service"), Some("reg"));
        assert_eq!(c[1].param("error"), Some("insufficient_scope"));

        assert!(parse_challenges("").is_empty());
        assert!(parse_challenges("=x").is_empty());
        // An unterminated quote keeps what was read.
        let c = parse_challenges(r#"Bearer realm="http://x"#);
        assert_eq!(c[0].param("realm"), Some("http://x"));
    }

    #[test]
    fn reads_token_answers() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let t = read_token(br#"{"token":"abc","expires_in":300}"#, now).unwrap();
        assert_eq!(t.value, "abc");
        assert_eq!(t.expires, now + Duration::from_secs(290));
        // OAuth2's name, the default life of 60 s.
        let t = read_token(br#"{"access_token":"xyz"}"#, now).unwrap();
        assert_eq!(t.value, "xyz");
        assert_eq!(t.expires, now + Duration::from_secs(54));
        // issued_at earlier than the local clock ends the token earlier.
        let t = read_token(
            br#"{"token":"abc","expires_in":100,"issued_at":"2023-11-14T22:12:20Z"}"#,
            now,
        )
        .unwrap();
        assert_eq!(
            t.expires,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_699_999_940 + 90)
        );
        assert!(read_token(br#"{"token":""}"#, now).is_none());
        assert!(read_token(b"not json", now).is_none());
        assert!(!format!("{t:?}").contains("abc"));
    }

    #[test]
    fn caches_per_scope_and_push_serves_pull() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let later = now + Duration::from_secs(100);
        let state = AuthState::default();
        assert_eq!(state.cached(&Access::Pull("a"), now), None);
        state.store(
            &Access::Push("a"),
            Token {
                value: "push-a".into(),
                expires: later,
            },
        );
        assert_eq!(
            state.cached(&Access::Pull("a"), now).as_deref(),
            Some("push-a")
        );
        assert_eq!(
            state.cached(&Access::Push("a"), now).as_deref(),
            Some("push-a")
        );
        assert_eq!(state.cached(&Access::Pull("b"), now), None);
        assert_eq!(state.cached(&Access::Ping, now).as_deref(), Some("push-a"));
        // A pull token does not serve a push.
        state.store(
            &Access::Pull("b"),
            Token {
                value: "pull-b".into(),
                expires: later,
            },
        );
        assert_eq!(state.cached(&Access::Push("b"), now), None);
        // Expired tokens are not used.
        assert_eq!(state.cached(&Access::Pull("a"), later), None);
        assert_eq!(scope(&Access::Ping), None);
        assert_eq!(
            scope(&Access::Mount {
                repo: "b",
                from: "a"
            })
            .as_deref(),
            Some("repository:b:pull,push repository:a:pull")
        );
        assert_eq!(
            scope(&Access::Push("x/y")).as_deref(),
            Some("repository:x/y:pull,push")
        );
    }
}
