//! The one redactor. Every string that leaves the process — report record strings, progress
//! lines, logs at any level, error messages — goes through [`text`], which replaces:
//! - every registered secret value ([`register`]: `${env:...}` values collected by the loader,
//!   sensitive HTTP header values, DSN passwords) with `***`;
//! - by pattern, whatever looks like a credential even if nobody registered it: the password of
//!   a URL's userinfo (`scheme://user:***@`), `password=***`, `Bearer ***` / `Basic ***`, and
//!   the value of `Authorization:` headers.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
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

fn named() -> &'static RwLock<Vec<(String, String)>> {
    static NAMED: OnceLock<RwLock<Vec<(String, String)>>> = OnceLock::new();
    NAMED.get_or_init(|| RwLock::new(Vec::new()))
}

/// Adds a secret read from environment variable `name`: masked like [`register`], and written
/// at rest (the journal) as the reference `${env:NAME}`, never as its value.
pub fn register_named(name: &str, secret: &str) {
    register(secret);
    if secret.trim().len() < MIN_SECRET_LEN {
        return;
    }
    let mut all = named().write().unwrap_or_else(|e| e.into_inner());
    if !all.iter().any(|(n, s)| n == name && s == secret) {
        all.push((name.to_string(), secret.to_string()));
        all.sort_by_key(|(_, s)| std::cmp::Reverse(s.len()));
    }
}

/// A JSON text for storage: every `${` escaped as `$${`, then every value of
/// [`register_named`] replaced by its `${env:NAME}` reference. [`crate::experiment::interp::from_references`]
/// undoes it.
pub fn to_references(json: &str) -> String {
    let mut out = json.replace("${", "$${");
    for (name, secret) in named().read().unwrap_or_else(|e| e.into_inner()).iter() {
        // As the value appears inside a JSON string.
        let quoted = serde_json::to_string(secret).unwrap_or_default();
        let inner = quoted.trim_start_matches('"').trim_end_matches('"');
        if !inner.is_empty() {
            out = out.replace(inner, &format!("${{env:{name}}}"));
        }
    }
    out
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
    let out = password_values(&out);
    let out = after_word(&out, "Bearer ");
    let out = after_word(&out, "Basic ");
    after_word(&out, "Authorization: ")
}

/// `password=…` (any case, spaces around `=`, the value quoted or not) → `password=***`: in a
/// libpq key/value DSN, a URL's query and any message that echoes one.
fn password_values(s: &str) -> String {
    const KEY: &str = "password";
    let lower = s.to_ascii_lowercase();
    let mut out = String::with_capacity(s.len());
    let mut pos = 0;
    while let Some(i) = lower[pos..].find(KEY) {
        let key_end = pos + i + KEY.len();
        let after = &s[key_end..];
        let Some(value) = after.trim_start().strip_prefix('=') else {
            out.push_str(&s[pos..key_end]);
            pos = key_end;
            continue;
        };
        let value = value.trim_start();
        let len = match value.strip_prefix('\'') {
            // Quoted: up to the closing quote that is not escaped.
            Some(q) => {
                let mut esc = false;
                let close = q.char_indices().find(|&(_, c)| {
                    let end = !esc && c == '\'';
                    esc = !esc && c == '\\';
                    end
                });
                1 + close.map_or(q.len(), |(j, _)| j + 1)
            }
            None => value
                .char_indices()
                .find(|(_, c)| {
                    c.is_whitespace()
                        || matches!(c, '&' | '"' | '\'' | ',' | ';' | ')' | ']' | '}' | '`')
                })
                .map_or(value.len(), |(j, _)| j),
        };
        out.push_str(&s[pos..pos + i]);
        out.push_str(&s[pos + i..key_end]);
        out.push('=');
        if len > 0 {
            out.push_str(MASK);
        }
        pos = s.len() - value.len() + len;
    }
    out.push_str(&s[pos..]);
    out
}

/// Masks the value that follows `word` (ASCII case-insensitive) up to a delimiter.
fn after_word(s: &str, word: &str) -> String {
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
                c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ';' | ')' | ']' | '}' | '`')
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

/// Output commands (`plan`, `validate`, `report` …) exit quietly when the reader of stdout is
/// gone (`firedrill plan … | head`), as every Unix tool does. A drill and `recover` never do:
/// reverting matters more than showing it.
static EXIT_ON_CLOSED_STDOUT: AtomicBool = AtomicBool::new(false);

/// The exit status of an output command whose stdout was closed: what a shell reports for a
/// tool that SIGPIPE ended (128 + 13).
pub const EXIT_CLOSED_STDOUT: i32 = 141;

/// Makes [`print_stdout`] exit on a closed stdout (see [`EXIT_ON_CLOSED_STDOUT`]).
pub fn exit_on_closed_stdout(yes: bool) {
    EXIT_ON_CLOSED_STDOUT.store(yes, Ordering::Relaxed);
}

/// Writes to stdout without ever panicking (`print!` panics when the write fails). A closed
/// pipe ends an output command quietly; any other failure is ignored.
pub fn print_stdout(s: &str) {
    let mut out = std::io::stdout().lock();
    let written = out.write_all(s.as_bytes()).and_then(|()| out.flush());
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe
            && EXIT_ON_CLOSED_STDOUT.load(Ordering::Relaxed)
        {
            std::process::exit(EXIT_CLOSED_STDOUT);
        }
    }
}

/// Writes to stderr without ever panicking: a closed terminal or pipe (SIGHUP, `2>&1 | head`)
/// must not turn a message in the revert path into a panic, nor a panic hook's message into
/// an abort. Errors are ignored: there is nobody left to tell.
pub fn print_stderr(s: &str) {
    let _ = std::io::stderr().lock().write_all(s.as_bytes());
}

/// `eprintln!` with the line masked, and never a panic on a closed stderr; `cli` imports it
/// under the name `eprintln` so that no message it prints can skip the redactor.
#[macro_export]
macro_rules! eprintln_redacted {
    () => { $crate::safety::redact::print_stderr("\n") };
    ($($arg:tt)*) => {
        $crate::safety::redact::print_stderr(&::std::format!(
            "{}\n",
            $crate::safety::redact::text(&::std::format!($($arg)*))
        ))
    };
}

/// `println!` with the line masked (see [`eprintln_redacted`] and [`print_stdout`]).
#[macro_export]
macro_rules! println_redacted {
    () => { $crate::safety::redact::print_stdout("\n") };
    ($($arg:tt)*) => {
        $crate::safety::redact::print_stdout(&::std::format!(
            "{}\n",
            $crate::safety::redact::text(&::std::format!($($arg)*))
        ))
    };
}

/// A `tracing` writer that masks each formatted event before it reaches stderr.
#[derive(Clone, Copy, Default)]
pub struct Stderr;

impl std::io::Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let masked = text(&String::from_utf8_lossy(buf));
        // A closed stderr loses the log line, never the drill.
        print_stderr(&masked);
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

    #[test]
    fn passwords_are_masked_in_dsns_of_both_forms() {
        for (dsn, shown) in [
            (
                "host=a port=1 user=u password=s3cr3t dbname=d",
                "host=a port=1 user=u password=*** dbname=d",
            ),
            (
                "host=a password = 'it\\'s x' user=u",
                "host=a password=*** user=u",
            ),
            ("host=a PASSWORD='' user=u", "host=a PASSWORD=*** user=u"),
            (
                "postgres://u:s3cr3t@h:5/d?sslmode=disable",
                "postgres://u:***@h:5/d?sslmode=disable",
            ),
            (
                "postgresql://h/d?password=x&user=u",
                "postgresql://h/d?password=***&user=u",
            ),
            ("password-env: PGPASS", "password-env: PGPASS"),
        ] {
            assert_eq!(text(dsn), shown, "{dsn}");
        }
    }
}
