//! The `postgres` probe as the experiment file gives it, and its DSN's TLS settings.
//!
//! TLS ([`TlsMode`]): the DSN's `sslmode` and `sslrootcert` are honoured with rustls, and a
//! certificate is always verified: `prefer` (the default, as in libpq) and `require` verify
//! the chain against `sslrootcert` (else the system's roots), `verify-ca` too, `verify-full`
//! also the host name; `prefer` falls back to plaintext only when the server offers no TLS.
//! `allow` is refused by `validate`: it would try plaintext first.

use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::DurationText;

/// A PostgreSQL probe as the experiment file gives it.
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PostgresProbeSpec {
    /// libpq-style DSN, key/value (`host=a,b port=1,2 … target_session_attrs=read-write`) or URL.
    pub dsn: String,
    /// Read the password from this environment variable.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Read the password from this file (first line).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    pub mode: PostgresMode,
    /// Bound on connecting and on each statement.
    #[serde(with = "humantime_serde", default = "default_timeout")]
    #[schemars(with = "DurationText")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(1)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(
    deny_unknown_fields,
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case"
)]
pub enum PostgresMode {
    /// Healthy when `query` answers within the timeout.
    Read { query: String },
    /// Insert numbered rows into `table` at `rate-hz` writes per second.
    Write { rate_hz: f64, table: String },
}

impl std::fmt::Debug for PostgresProbeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresProbeSpec")
            .field("dsn", &crate::safety::redact::text(&self.dsn))
            .field("password_env", &self.password_env)
            .field("password_file", &self.password_file)
            .field("mode", &self.mode)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// `sslmode` as firedrill honours it (see the module's doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// The TLS part of a DSN: tokio-postgres knows neither `sslrootcert` nor the `verify-*`
/// modes, so they are taken out of the DSN before it parses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    pub mode: TlsMode,
    /// `sslrootcert`: a PEM file of trusted roots; `None` or `system`: the system's roots.
    pub root_cert: Option<PathBuf>,
}

impl TlsMode {
    fn parse(v: &str) -> Result<TlsMode, String> {
        Ok(match v {
            "disable" => TlsMode::Disable,
            "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-ca" => TlsMode::VerifyCa,
            "verify-full" => TlsMode::VerifyFull,
            "allow" => return Err("sslmode=allow is not supported: it tries plaintext first; use `prefer`, `require`, `verify-ca` or `verify-full` (TLS, certificate verified) or `disable`".into()),
            other => return Err(format!("unknown sslmode `{other}`: use disable, prefer, require, verify-ca or verify-full")),
        })
    }

    /// What tokio-postgres itself is told: it only decides whether TLS is attempted/required.
    pub fn for_driver(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => "require",
        }
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).and_then(|&b| hex(b)),
            bytes.get(i + 2).and_then(|&b| hex(b)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits the TLS options off a DSN (key/value or URL form); returns the DSN tokio-postgres
/// is given (its `sslmode` rewritten to what the driver understands) and the options.
pub fn split_tls(dsn: &str) -> Result<(String, TlsOptions), String> {
    let mut mode = None;
    let mut root = None;
    let mut take = |key: &str, value: String| -> Result<bool, String> {
        match key {
            "sslmode" => mode = Some(TlsMode::parse(&value)?),
            "sslrootcert" => root = Some(value),
            _ => return Ok(false),
        }
        Ok(true)
    };
    let trimmed = dsn.trim_start();
    let rest = if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        match dsn.split_once('?') {
            None => dsn.to_string(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&') {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if !take(&percent_decode(k), percent_decode(v))? {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        // key = value pairs; a value may be 'quoted' with \' and \\ escapes.
        let chars: Vec<char> = dsn.chars().collect();
        let mut kept = String::new();
        let mut i = 0;
        while i < chars.len() {
            if chars[i].is_whitespace() {
                i += 1;
                continue;
            }
            let start = i;
            let mut key = String::new();
            while i < chars.len() && chars[i] != '=' && !chars[i].is_whitespace() {
                key.push(chars[i]);
                i += 1;
            }
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            if i < chars.len() && chars[i] == '=' {
                i += 1;
            }
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            let mut value = String::new();
            if i < chars.len() && chars[i] == '\'' {
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    value.push(chars[i]);
                    i += 1;
                }
                i += 1;
            } else {
                while i < chars.len() && !chars[i].is_whitespace() {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    value.push(chars[i]);
                    i += 1;
                }
            }
            if !take(&key, value)? {
                let end = i.min(chars.len());
                kept.push_str(&chars[start..end].iter().collect::<String>());
                kept.push(' ');
            }
        }
        kept.trim_end().to_string()
    };
    let mode = mode.unwrap_or(TlsMode::Prefer);
    let root_cert = root.filter(|r| r != "system").map(PathBuf::from);
    let sep = if rest.starts_with("postgres://") || rest.starts_with("postgresql://") {
        if rest.contains('?') {
            "&"
        } else {
            "?"
        }
    } else if rest.is_empty() {
        ""
    } else {
        " "
    };
    Ok((
        format!("{rest}{sep}sslmode={}", mode.for_driver()),
        TlsOptions { mode, root_cert },
    ))
}
