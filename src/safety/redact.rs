//! The one redactor. Every string that leaves the process — report record strings, progress
//! lines, logs at any level, error messages — goes through [`text`], which replaces:
//! - every registered secret value ([`register`]: `${env:...}` values collected by the loader,
//!   sensitive HTTP header values, DSN passwords) with `***`;
//! - by pattern, whatever looks like a credential even if nobody registered it: the password of
//!   a URL's userinfo (`scheme://user:***@`), `password=***`, `Bearer ***` / `Basic ***`, and
//!   the value of `Authorization:` headers.

use std::sync::{OnceLock, RwLock};

const MASK: &str = "***";

/// Shorter values are not registered: masking every `a` would make output unreadable, and a
/// 1–2 character secret protects nothing anyway.
const MIN_SECRET_LEN: usize = 3;

fn secrets() -> &'static RwLock<Vec<String>> {
    static SECRETS: OnceLock<RwLock<Vec<String>>> = OnceLock::new();
    SECRETS.get_or_init(|| RwLock::new(Vec::new()))
}

/// Adds a value to be masked from now on.
pub fn register(secret: &str) {
    let secret = secret.trim();
    if secret.len() < MIN_SECRET_LEN {
        return;
    }
    let mut all = secrets().write().unwrap_or_else(|e| e.into_inner());
    if !all.iter().any(|s| s == secret) {
        all.push(secret.to_string());
        // Longest first, so a secret containing another is masked whole.
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// Header names whose values are credentials.
pub fn sensitive_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "authorization"
        || n == "proxy-authorization"
        || n == "cookie"
        || n == "set-cookie"
        || n.contains("token")
        || n.contains("api-key")
        || n.contains("apikey")
        || n.contains("secret")
        || n.contains("password")
}

/// Registers every secret an experiment carries: `${env:...}` values, sensitive header values
/// (and the credential part after a scheme word such as `Bearer`), DSN passwords.
pub fn register_experiment(exp: &crate::experiment::Experiment) {
    for s in &exp.secrets {
        register(s);
    }
    for p in &exp.probes {
        match &p.kind {
            crate::experiment::ProbeKind::Http(h) => register_headers(&h.headers),
            crate::experiment::ProbeKind::Prometheus(p) => {
                register_headers(&p.headers);
                match &p.auth {
                    Some(crate::experiment::PrometheusAuth::Bearer(token)) => register(token),
                    Some(crate::experiment::PrometheusAuth::Basic { password, .. }) => {
                        register(password)
                    }
                    None => {}
                }
            }
            crate::experiment::ProbeKind::Postgres(pg) => {
                if let Ok(cfg) = pg.dsn.parse::<tokio_postgres::Config>() {
                    if let Some(pw) = cfg.get_password() {
                        register(&String::from_utf8_lossy(pw));
                    }
                }
                if let Some(var) = &pg.password_env {
                    if let Ok(v) = std::env::var(var) {
                        register(&v);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Sensitive header values, and the credential after a scheme word such as `Bearer`.
fn register_headers(headers: &[(String, String)]) {
    for (name, value) in headers {
        if sensitive_header(name) {
            register(value);
            if let Some((_, cred)) = value.split_once(' ') {
                register(cred);
            }
        }
    }
}

/// `s` with every secret masked.
pub fn text(s: &str) -> String {
    let mut out = s.to_string();
    {
        let all = secrets().read().unwrap_or_else(|e| e.into_inner());
        for secret in all.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
    }
    let out = userinfo(&out);
    let out = after_word(&out, "password=", true);
    let out = after_word(&out, "Bearer ", false);
    let out = after_word(&out, "Basic ", false);
    after_word(&out, "Authorization: ", false)
}

/// Masks the value that follows `word` (ASCII case-insensitive) up to a delimiter.
fn after_word(s: &str, word: &str, stop_at_amp: bool) -> String {
    let lower = s.to_ascii_lowercase();
    let w = word.to_ascii_lowercase();
    let mut out = String::with_capacity(s.len());
    let mut pos = 0;
    while let Some(i) = lower[pos..].find(&w) {
        let start = pos + i + w.len();
        out.push_str(&s[pos..start]);
        let rest = &s[start..];
        let end = rest
            .char_indices()
            .find(|(_, c)| {
                c.is_whitespace()
                    || matches!(c, '"' | '\'' | ',' | ';' | ')' | ']' | '}' | '`')
                    || (stop_at_amp && *c == '&')
            })
            .map_or(rest.len(), |(j, _)| j);
        if end > 0 {
            out.push_str(MASK);
        }
        pos = start + end;
    }
    out.push_str(&s[pos..]);
    out
}

/// `scheme://user:password@host` → `scheme://user:***@host`.
fn userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pos = 0;
    while let Some(i) = s[pos..].find("://") {
        let auth_start = pos + i + 3;
        out.push_str(&s[pos..auth_start]);
        let rest = &s[auth_start..];
        // The authority ends at the first '/', whitespace or quote.
        let end = rest
            .char_indices()
            .find(|(_, c)| c.is_whitespace() || matches!(c, '/' | '"' | '\'' | '`' | '?' | '#'))
            .map_or(rest.len(), |(j, _)| j);
        let authority = &rest[..end];
        match authority.rfind('@') {
            Some(at) => {
                let user_pass = &authority[..at];
                match user_pass.split_once(':') {
                    Some((user, _)) => {
                        out.push_str(user);
                        out.push(':');
                        out.push_str(MASK);
                    }
                    None => out.push_str(user_pass),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        pos = auth_start + end;
    }
    out.push_str(&s[pos..]);
    out
}

/// Every string inside a JSON value, masked.
pub fn json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => {
            let masked = text(s);
            if masked != *s {
                *s = masked;
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(json),
        serde_json::Value::Object(o) => o.values_mut().for_each(json),
        _ => {}
    }
}

/// `eprintln!` with the line masked; `cli` imports it under the name `eprintln` so that no
/// message it prints can skip the redactor.
#[macro_export]
macro_rules! eprintln_redacted {
    () => { ::std::eprintln!() };
    ($($arg:tt)*) => {
        ::std::eprintln!("{}", $crate::safety::redact::text(&::std::format!($($arg)*)))
    };
}

/// `println!` with the line masked (see [`eprintln_redacted`]).
#[macro_export]
macro_rules! println_redacted {
    () => { ::std::println!() };
    ($($arg:tt)*) => {
        ::std::println!("{}", $crate::safety::redact::text(&::std::format!($($arg)*)))
    };
}

/// A `tracing` writer that masks each formatted event before it reaches stderr.
#[derive(Clone, Copy, Default)]
pub struct Stderr;

impl std::io::Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let masked = text(&String::from_utf8_lossy(buf));
        std::io::stderr().write_all(masked.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Stderr {
    type Writer = Stderr;

    fn make_writer(&'a self) -> Self::Writer {
        Stderr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_mask_credentials_nobody_registered() {
        assert_eq!(
            text("cannot connect to postgres://app:hunter2@127.0.0.1:5432/db"),
            "cannot connect to postgres://app:***@127.0.0.1:5432/db"
        );
        assert_eq!(
            text("host=db password=hunter2 user=app"),
            "host=db password=*** user=app"
        );
        assert_eq!(
            text("header Authorization: Bearer abc.def rejected"),
            "header Authorization: *** *** rejected"
        );
        assert_eq!(
            text("https://example.test/x?a=1"),
            "https://example.test/x?a=1"
        );
        assert_eq!(text("no secrets here"), "no secrets here");
    }

    #[test]
    fn registered_values_are_masked_everywhere() {
        register("canary-unit-s3cret");
        assert_eq!(
            text("GET /?token=canary-unit-s3cret failed"),
            "GET /?token=*** failed"
        );
        let mut v = serde_json::json!({"a": ["x canary-unit-s3cret y"], "n": 1});
        json(&mut v);
        assert_eq!(v["a"][0], "x *** y");
    }
}
