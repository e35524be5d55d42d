//! PostgreSQL probes: a read check (a query answered within a timeout), and the writer that
//! measures a database drill's data loss and write-path recovery.
//!
//! The writer inserts monotonically numbered rows at a fixed rate into a drill table it creates,
//! reconnecting through the DSN (multi-host with `target_session_attrs=read-write` follows a
//! failover without a proxy), and classifies every write:
//! - *acknowledged*: the server confirmed the commit;
//! - *failed*: definitely not committed — no connection, the statement could not be prepared,
//!   or the server answered with an `ERROR` (an autocommit statement that errors is rolled back);
//! - *indeterminate*: the write was sent but its outcome is unknown — the connection was lost,
//!   the server sent `FATAL` (it may have committed locally first), or the write timed out.
//!
//! Each attempt is also a probe sample (ok = acknowledged), so time to detect and time to
//! recover work on the write path like on any probe. After recovery, [`PostgresWriter::read_back`]
//! reads every sequence number of the run from the new primary for the lost-write check
//! ([`crate::analysis::rpo`]).
//!
//! Secrets: the DSN's password, and one given through `password-env`/`password-file`, never
//! appear in an error or a report: every message built here is passed through the one redactor
//! ([`crate::safety::redact::text`]), with which both are registered.
//!
//! TLS ([`TlsMode`]): the DSN's `sslmode` and `sslrootcert` are honoured with rustls, and a
//! certificate is always verified: `prefer` (the default, as in libpq) and `require` verify
//! the chain against `sslrootcert` (else the system's roots), `verify-ca` too, `verify-full`
//! also the host name; `prefer` falls back to plaintext only when the server offers no TLS.
//! `allow` is refused by `validate`: it would try plaintext first.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::{Client, Config, NoTls, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{Observation, ProbeSample, Reason, SourceContext};
use crate::analysis::rpo::{WriteAttempt, WriteOutcome};
use crate::experiment::model::postgres::{
    split_tls, PostgresMode, PostgresProbeSpec, TlsMode, TlsOptions,
};
use crate::timeline::{Clock, Sample};
use crate::timer::precise_sleep_until;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PgError {
    #[error("invalid postgres probe: {0}")]
    Config(String),
    #[error("cannot connect to postgres ({dsn}): {cause}")]
    Connect { dsn: String, cause: String },
    #[error("postgres {what} failed: {cause}")]
    Query { what: String, cause: String },
}

/// Accepts what the chain check accepts and ignores only a name mismatch: `verify-ca`'s (and
/// `require`'s) promise — the server holds a certificate from a trusted CA.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &rustls_pki_types::CertificateDer<'_>,
        intermediates: &[rustls_pki_types::CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use rustls::{CertificateError, Error};
        // The chain is checked before the name: a name error means the chain was good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The rustls connector for these options (`None`: plaintext only).
fn tls_connector(opts: &TlsOptions) -> Result<Option<MakeRustlsConnect>, String> {
    use rustls_pki_types::pem::PemObject;
    if opts.mode == TlsMode::Disable {
        return Ok(None);
    }
    let mut roots = rustls::RootCertStore::empty();
    match &opts.root_cert {
        Some(path) => {
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
            for c in certs {
                let c = c.map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "sslrootcert {} holds no certificate",
                    path.display()
                ));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| format!("cannot build the certificate verifier: {e}"))?;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = if opts.mode == TlsMode::VerifyFull {
        builder.with_webpki_verifier(verifier).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly(verifier)))
            .with_no_client_auth()
    };
    Ok(Some(MakeRustlsConnect::new(config)))
}

/// A connection config ready to use, and what must never be printed.
#[derive(Clone)]
pub struct Target {
    config: Config,
    tls: Option<MakeRustlsConnect>,
    tls_mode: TlsMode,
    shown: String,
    timeout: Duration,
}

impl Target {
    /// Parse the spec's DSN and resolve its password (DSN, `password-env` or `password-file`).
    pub fn new(spec: &PostgresProbeSpec) -> Result<Target, PgError> {
        let shown = crate::safety::redact::text(&spec.dsn);
        if spec.timeout.is_zero() {
            return Err(PgError::Config("timeout must be more than 0".into()));
        }
        let (dsn, tls) =
            split_tls(&spec.dsn).map_err(|e| PgError::Config(format!("dsn `{shown}`: {e}")))?;
        let mut config: Config = dsn.parse().map_err(|e: tokio_postgres::Error| {
            PgError::Config(format!("dsn `{shown}`: {}", error_text(&e)))
        })?;
        let tls_mode = tls.mode;
        let tls =
            tls_connector(&tls).map_err(|e| PgError::Config(format!("dsn `{shown}`: {e}")))?;
        if let Some(p) = config.get_password() {
            crate::safety::redact::register(&String::from_utf8_lossy(p));
        }
        let external = match (&spec.password_env, &spec.password_file) {
            (Some(_), Some(_)) => {
                return Err(PgError::Config(
                    "give password-env or password-file, not both".into(),
                ))
            }
            (Some(var), None) => Some(
                std::env::var(var)
                    .map_err(|_| PgError::Config(format!("password-env `{var}` is not set")))?,
            ),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    PgError::Config(format!("cannot read password-file {}: {e}", path.display()))
                })?;
                Some(text.lines().next().unwrap_or("").to_string())
            }
            (None, None) => None,
        };
        if let Some(p) = external {
            // Masked in every sink from now on: this probe's messages and everything else.
            crate::safety::redact::register(&p);
            config.password(p);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(spec.timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("firedrill");
        }
        Ok(Target {
            config,
            tls,
            tls_mode,
            shown,
            timeout: spec.timeout,
        })
    }

    /// The same server and credentials, another database.
    pub fn with_database(&self, db: &str) -> Target {
        let mut t = self.clone();
        t.config.dbname(db);
        t.shown = format!("{} (database {db})", self.shown);
        t
    }

    /// The DSN's `sslmode`.
    pub fn tls_mode(&self) -> TlsMode {
        self.tls_mode
    }

    /// Whether every host of the DSN is this machine (a loopback address, `localhost` or a
    /// unix socket).
    pub fn local_only(&self) -> bool {
        use tokio_postgres::config::Host;
        self.config.get_hosts().iter().all(|h| match h {
            Host::Tcp(name) => {
                name == "localhost"
                    || name
                        .trim_matches(|c| c == '[' || c == ']')
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            Host::Unix(_) => true,
        }) && self
            .config
            .get_hostaddrs()
            .iter()
            .all(|ip| ip.is_loopback())
    }

    /// Whether the DSN itself carries a password.
    pub fn has_password(&self) -> bool {
        self.config.get_password().is_some()
    }

    /// The DSN as it may be shown (password redacted).
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Connect within the timeout; the connection's I/O task is aborted when the returned
    /// [`Session`] is dropped.
    pub async fn connect(&self) -> Result<Session, PgError> {
        let fail = |cause: String| PgError::Connect {
            dsn: self.shown.clone(),
            cause: crate::safety::redact::text(&cause),
        };
        // The multi-host connect tries each host in turn, each within connect_timeout; bound
        // the whole attempt too.
        let hosts = self.config.get_hosts().len().max(1) as u32;
        let limit = self.timeout * hosts + Duration::from_millis(100);
        let io = match &self.tls {
            None => match tokio::time::timeout(limit, self.config.connect(NoTls)).await {
                Err(_) => return Err(fail(format!("timed out after {limit:?}"))),
                Ok(Err(e)) => return Err(fail(error_text(&e))),
                Ok(Ok((client, conn))) => (
                    client,
                    tokio::spawn(async move {
                        let _ = conn.await;
                    }),
                ),
            },
            Some(tls) => {
                match tokio::time::timeout(limit, self.config.connect(tls.clone())).await {
                    Err(_) => return Err(fail(format!("timed out after {limit:?}"))),
                    Ok(Err(e)) => {
                        return Err(fail(format!(
                            "{} (sslmode={:?})",
                            error_text(&e),
                            self.tls_mode
                        )))
                    }
                    Ok(Ok((client, conn))) => (
                        client,
                        tokio::spawn(async move {
                            let _ = conn.await;
                        }),
                    ),
                }
            }
        };
        let (client, io) = io;
        Ok(Session { client, io })
    }

    fn query_error(&self, what: &str, e: &tokio_postgres::Error) -> PgError {
        PgError::Query {
            what: what.to_string(),
            cause: crate::safety::redact::text(&error_text(e)),
        }
    }
}

/// A connected client and its I/O task.
pub struct Session {
    pub client: Client,
    io: JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.io.abort();
    }
}

/// A tokio-postgres error as one line a person can act on: the server's own message for
/// database errors, the innermost cause otherwise.
pub(crate) fn error_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
    }
    let mut text = e.to_string();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cur {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cur = c.source();
    }
    text
}

/// The read check: healthy when the query answers within the timeout.
pub struct PostgresChecker {
    target: Target,
    query: String,
    session: Option<Session>,
}

impl PostgresChecker {
    pub fn new(spec: &PostgresProbeSpec) -> Result<Self, PgError> {
        let PostgresMode::Read { query } = &spec.mode else {
            return Err(PgError::Config(
                "a postgres check needs `mode: read`; the writer runs as its own source".into(),
            ));
        };
        if query.trim().is_empty() {
            return Err(PgError::Config("the read query is empty".into()));
        }
        Ok(PostgresChecker {
            target: Target::new(spec)?,
            query: query.clone(),
            session: None,
        })
    }

    pub async fn check(&mut self) -> Result<(), Reason> {
        if self.session.as_ref().is_none_or(|s| s.client.is_closed()) {
            self.session = None;
            self.session = Some(self.target.connect().await.map_err(|e| e.to_string())?);
        }
        let Some(s) = &self.session else {
            return Err("not connected".into());
        };
        let timeout = self.target.timeout;
        let r = tokio::time::timeout(timeout, s.client.simple_query(&self.query)).await;
        match r {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                let err = self.target.query_error("query", &e);
                self.session = None;
                Err(err.to_string())
            }
            Err(_) => {
                self.session = None;
                Err(format!("query timed out after {timeout:?}"))
            }
        }
    }
}

/// Everything the writer did in one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteHistory {
    pub run_id: String,
    pub table: String,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    pub attempts: Vec<WriteAttempt>,
}

/// The writer: one connection, one numbered insert per tick.
pub struct PostgresWriter {
    target: Target,
    table: String,
    run_id: String,
    interval: Duration,
    clock: Clock,
    session: Option<(Session, Statement)>,
    table_ready: bool,
    next_seq: u64,
    history: Vec<WriteAttempt>,
}

impl PostgresWriter {
    /// A writer for `spec` (which must be `mode: write`), numbering rows of `run_id` from 1
    /// and stamping them on `clock`.
    pub fn new(spec: &PostgresProbeSpec, run_id: &str, clock: Clock) -> Result<Self, PgError> {
        let PostgresMode::Write { rate_hz, table } = &spec.mode else {
            return Err(PgError::Config("the writer needs `mode: write`".into()));
        };
        if !(rate_hz.is_finite() && *rate_hz > 0.0 && *rate_hz <= 1000.0) {
            return Err(PgError::Config(format!(
                "rate-hz must be more than 0 and at most 1000, not {rate_hz}"
            )));
        }
        if !valid_table_name(table) {
            return Err(PgError::Config(format!(
                "table `{table}` must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*, optionally schema-qualified)"
            )));
        }
        if run_id.is_empty() {
            return Err(PgError::Config("the run id is empty".into()));
        }
        Ok(PostgresWriter {
            target: Target::new(spec)?,
            table: table.clone(),
            run_id: run_id.to_string(),
            interval: Duration::from_secs_f64(1.0 / rate_hz),
            clock,
            session: None,
            table_ready: false,
            next_seq: 1,
            history: Vec::new(),
        })
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn history(&self) -> &[WriteAttempt] {
        &self.history
    }

    /// Create the drill table if needed (idempotent). Safe to call before the drill, so that
    /// a bad DSN or password fails preflight instead of the first write.
    pub async fn prepare(&mut self) -> Result<(), PgError> {
        let s = self.target.connect().await?;
        self.create_table(&s).await
    }

    async fn create_table(&mut self, s: &Session) -> Result<(), PgError> {
        if self.table_ready {
            return Ok(());
        }
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {} (\
               run_id text NOT NULL, \
               seq bigint NOT NULL, \
               written_at timestamptz NOT NULL DEFAULT clock_timestamp(), \
               PRIMARY KEY (run_id, seq))",
            self.table
        );
        match tokio::time::timeout(self.target.timeout, s.client.batch_execute(&ddl)).await {
            Ok(Ok(())) => {
                self.table_ready = true;
                Ok(())
            }
            // Two writers creating the table at once: one loses the race, the table exists.
            Ok(Err(e)) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                self.table_ready = true;
                Ok(())
            }
            Ok(Err(e)) => Err(self.target.query_error("create table", &e)),
            Err(_) => Err(PgError::Query {
                what: "create table".into(),
                cause: format!("timed out after {:?}", self.target.timeout),
            }),
        }
    }

    /// Make one numbered write and record its outcome.
    pub async fn write_once(&mut self) -> WriteAttempt {
        let seq = self.next_seq;
        self.next_seq += 1;
        let sent = self.clock.now();
        let (outcome, reason) = self.attempt(seq).await;
        let w = WriteAttempt {
            seq,
            sent,
            done: self.clock.now(),
            outcome,
            reason,
        };
        self.history.push(w.clone());
        w
    }

    async fn attempt(&mut self, seq: u64) -> (WriteOutcome, Option<String>) {
        let failed = |why: String| (WriteOutcome::Failed, Some(why));
        if self
            .session
            .as_ref()
            .is_some_and(|(s, _)| s.client.is_closed())
        {
            self.session = None;
        }
        if self.session.is_none() {
            let s = match self.target.connect().await {
                Ok(s) => s,
                Err(e) => return failed(e.to_string()),
            };
            if let Err(e) = self.create_table(&s).await {
                return failed(e.to_string());
            }
            let sql = format!("INSERT INTO {} (run_id, seq) VALUES ($1, $2)", self.table);
            let stmt = match tokio::time::timeout(self.target.timeout, s.client.prepare(&sql)).await
            {
                Ok(Ok(stmt)) => stmt,
                Ok(Err(e)) => return failed(self.target.query_error("prepare", &e).to_string()),
                Err(_) => {
                    return failed(format!("prepare timed out after {:?}", self.target.timeout))
                }
            };
            self.session = Some((s, stmt));
        }
        let Some((s, stmt)) = &self.session else {
            return failed("not connected".into());
        };
        let seq_param = seq as i64;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&self.run_id, &seq_param];
        let result =
            tokio::time::timeout(self.target.timeout, s.client.execute(stmt, &params)).await;
        match result {
            Ok(Ok(_)) => (WriteOutcome::Acknowledged, None),
            Ok(Err(e)) => {
                let text = self.target.query_error("insert", &e).to_string();
                // An ERROR rolls the autocommit statement back; anything else (FATAL, a lost
                // connection) may have come after the commit was made durable.
                let rolled_back = e.as_db_error().is_some_and(|db| db.severity() == "ERROR");
                self.session = None;
                if rolled_back {
                    (WriteOutcome::Failed, Some(text))
                } else {
                    (WriteOutcome::Indeterminate, Some(text))
                }
            }
            Err(_) => {
                self.session = None;
                (
                    WriteOutcome::Indeterminate,
                    Some(format!("insert timed out after {:?}", self.target.timeout)),
                )
            }
        }
    }

    /// Write at the fixed rate until `ctx.cancel` fires, sending each attempt as a sample of
    /// probe `probe`; returns the history. A write in flight when cancelled is finished first
    /// (it is bounded by the timeout), so the history has no hole.
    pub async fn run(mut self, probe: usize, ctx: SourceContext) -> WriteHistory {
        let mut due = Instant::now();
        loop {
            if ctx.cancel.is_cancelled() {
                break;
            }
            let scheduled = self.clock.offset(due);
            let w = self.write_once().await;
            let sample = Sample {
                scheduled,
                start: w.sent,
                end: w.done,
                ok: w.outcome == WriteOutcome::Acknowledged,
                reason: w.reason.clone(),
            };
            // The executor may stop listening before the writer stops; the history still counts.
            let _ = ctx
                .tx
                .send(Observation::Sample(ProbeSample { probe, sample }))
                .await;
            let next = due + self.interval;
            tokio::select! {
                biased;
                _ = ctx.cancel.cancelled() => break,
                _ = precise_sleep_until(next) => {
                    let now = Instant::now();
                    due = if now.duration_since(next) > self.interval { now } else { next };
                }
            }
        }
        self.into_history()
    }

    pub fn into_history(self) -> WriteHistory {
        WriteHistory {
            run_id: self.run_id,
            table: self.table,
            interval: self.interval,
            attempts: self.history,
        }
    }

    /// Read every sequence number of this run from the primary, retrying until `wait` has
    /// passed (the cluster may still be settling after the failover).
    pub async fn read_back(&self, wait: Duration) -> Result<HashSet<u64>, PgError> {
        read_back(&self.target, &self.table, &self.run_id, wait).await
    }
}

/// Every sequence number written for `run_id` in `table`, read from a read-write session.
pub async fn read_back(
    target: &Target,
    table: &str,
    run_id: &str,
    wait: Duration,
) -> Result<HashSet<u64>, PgError> {
    if !valid_table_name(table) {
        return Err(PgError::Config(format!(
            "table `{table}` is not a plain identifier"
        )));
    }
    let deadline = Instant::now() + wait;
    let sql = format!("SELECT seq FROM {table} WHERE run_id = $1");
    loop {
        let r = async {
            let s = target.connect().await?;
            let limit = target.timeout.max(Duration::from_secs(5));
            match tokio::time::timeout(limit, s.client.query(&sql, &[&run_id])).await {
                Ok(Ok(rows)) => Ok(rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect()),
                Ok(Err(e)) => Err(target.query_error("read back", &e)),
                Err(_) => Err(PgError::Query {
                    what: "read back".into(),
                    cause: format!("timed out after {limit:?}"),
                }),
            }
        }
        .await;
        match r {
            Ok(set) => return Ok(set),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

fn valid_table_name(t: &str) -> bool {
    let ident = |s: &str| {
        let mut c = s.chars();
        matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
            && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
            && s.len() <= 63
    };
    match t.split_once('.') {
        Some((schema, name)) => ident(schema) && ident(name),
        None => ident(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_options_are_taken_out_of_the_dsn_in_both_forms() {
        let (rest, o) =
            split_tls("host=h port=5 sslmode=verify-full sslrootcert='/a b/ca.pem' user=u")
                .unwrap();
        assert_eq!(rest, "host=h port=5 user=u sslmode=require");
        assert_eq!(o.mode, TlsMode::VerifyFull);
        assert_eq!(o.root_cert, Some(std::path::PathBuf::from("/a b/ca.pem")));
        let (rest, o) =
            split_tls("postgres://u@h:5/d?sslrootcert=%2Ftmp%2Fca.pem&application_name=x").unwrap();
        assert_eq!(rest, "postgres://u@h:5/d?application_name=x&sslmode=prefer");
        assert_eq!(o.mode, TlsMode::Prefer);
        assert_eq!(o.root_cert, Some(std::path::PathBuf::from("/tmp/ca.pem")));
        let (rest, o) = split_tls("postgres://h/d?sslmode=disable").unwrap();
        assert_eq!(rest, "postgres://h/d?sslmode=disable");
        assert_eq!(o.mode, TlsMode::Disable);
        let (_, o) = split_tls("host=h sslrootcert=system").unwrap();
        assert_eq!(o.root_cert, None);
        assert!(split_tls("host=h sslmode=allow")
            .unwrap_err()
            .contains("plaintext first"));
        assert!(split_tls("host=h sslmode=bogus").is_err());
    }

    fn spec(dsn: &str, mode: PostgresMode) -> PostgresProbeSpec {
        PostgresProbeSpec {
            dsn: dsn.into(),
            password_env: None,
            password_file: None,
            mode,
            timeout: Duration::from_millis(500),
        }
    }

    #[test]
    fn a_spec_never_shows_its_password() {
        let s = spec(
            "host=127.0.0.1 password=hunter2",
            PostgresMode::Read {
                query: "select 1".into(),
            },
        );
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn an_unreachable_dsn_is_a_clear_error_without_the_password() {
        let (_closed, addr) = crate::testing::refusing_addr();
        let port = addr.port();
        let dsn = format!("host=127.0.0.1 port={port} user=u password=hunter2 dbname=d");
        let mut c = PostgresChecker::new(&spec(
            &dsn,
            PostgresMode::Read {
                query: "select 1".into(),
            },
        ))
        .unwrap();
        let e = c.check().await.unwrap_err();
        assert!(e.contains("cannot connect") && e.contains("refused"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let mut w = PostgresWriter::new(
            &spec(
                &dsn,
                PostgresMode::Write {
                    rate_hz: 10.0,
                    table: "t".into(),
                },
            ),
            "r1",
            Clock::start(),
        )
        .unwrap();
        let a = w.write_once().await;
        assert_eq!(a.outcome, WriteOutcome::Failed);
        assert!(!a.reason.unwrap().contains("hunter2"));
    }

    #[test]
    fn the_spec_reads_as_an_experiment_file_writes_it() {
        let s: PostgresProbeSpec = serde_json::from_value(serde_json::json!({
            "dsn": "host=127.0.0.1 port=5432 user=app target_session_attrs=read-write",
            "password-env": "PGPASSWORD_APP",
            "mode": {"write": {"rate-hz": 50.0, "table": "firedrill_writes"}},
            "timeout": "500ms"
        }))
        .unwrap();
        assert_eq!(s.timeout, Duration::from_millis(500));
        assert!(matches!(s.mode, PostgresMode::Write { .. }));
        let r: PostgresProbeSpec = serde_json::from_value(serde_json::json!({
            "dsn": "host=h", "mode": {"read": {"query": "SELECT 1"}}
        }))
        .unwrap();
        assert_eq!(r.timeout, Duration::from_secs(1));
    }

    #[test]
    fn bad_specs_are_refused() {
        let w = |rate_hz: f64, table: &str| {
            PostgresWriter::new(
                &spec(
                    "host=h",
                    PostgresMode::Write {
                        rate_hz,
                        table: table.into(),
                    },
                ),
                "r",
                Clock::start(),
            )
            .err()
            .map(|e| e.to_string())
        };
        assert!(w(0.0, "t").unwrap().contains("rate-hz"));
        assert!(w(10.0, "t; drop table x")
            .unwrap()
            .contains("plain identifier"));
        assert!(w(10.0, "drill.writes").is_none());
        let mut s = spec(
            "host=h",
            PostgresMode::Read {
                query: "select 1".into(),
            },
        );
        s.password_env = Some("FIREDRILL_TEST_SURELY_UNSET".into());
        assert!(PostgresChecker::new(&s)
            .err()
            .unwrap()
            .to_string()
            .contains("is not set"));
        let bad = spec(
            "host=h port=notaport password=hunter2",
            PostgresMode::Read {
                query: "select 1".into(),
            },
        );
        let e = PostgresChecker::new(&bad).err().unwrap().to_string();
        assert!(e.contains("invalid") && !e.contains("hunter2"), "{e}");
    }
}
