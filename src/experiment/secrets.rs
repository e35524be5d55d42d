//! The secrets an experiment carries, handed to the one redactor ([`crate::safety::redact`])
//! before anything runs: `${env:...}` values, sensitive header values, DSN and Patroni
//! passwords, password files.

use super::{Experiment, FaultSpec, ProbeKind, PrometheusAuth};
use crate::safety::redact;

/// Registers every secret an experiment carries: `${env:...}` values, sensitive header values
/// (and the credential part after a scheme word such as `Bearer`), DSN passwords.
pub fn register(exp: &Experiment) {
    for s in &exp.secrets {
        redact::register(s);
    }
    for p in &exp.probes {
        match &p.kind {
            ProbeKind::Http(h) => register_headers(&h.headers),
            ProbeKind::Prometheus(p) => {
                register_headers(&p.headers);
                match &p.auth {
                    Some(PrometheusAuth::Bearer(token)) => redact::register(token),
                    Some(PrometheusAuth::Basic { password, .. }) => redact::register(password),
                    None => {}
                }
            }
            ProbeKind::Postgres(pg) => {
                if let Ok(cfg) = pg.dsn.parse::<tokio_postgres::Config>() {
                    if let Some(pw) = cfg.get_password() {
                        redact::register(&String::from_utf8_lossy(pw));
                    }
                }
                if let Some(var) = &pg.password_env {
                    if let Ok(v) = std::env::var(var) {
                        redact::register(&v);
                    }
                }
                if let Some(path) = &pg.password_file {
                    if let Ok(text) = std::fs::read_to_string(path) {
                        // The probe uses the first line; the whole file is secret.
                        text.lines().for_each(redact::register);
                    }
                }
            }
            _ => {}
        }
    }
    for f in &exp.faults {
        if let FaultSpec::DbFailover(spec) = f {
            if let Some(Ok(v)) = spec.patroni_password_env.as_ref().map(std::env::var) {
                redact::register(&v);
            }
        }
    }
}

/// Sensitive header values, and the credential after a scheme word such as `Bearer`.
fn register_headers(headers: &[(String, String)]) {
    for (name, value) in headers {
        if redact::sensitive_header(name) {
            redact::register(value);
            if let Some((_, cred)) = value.split_once(' ') {
                redact::register(cred);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_files_and_the_patroni_password_are_masked_once_an_experiment_is_known() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "canary-pwfile-61d0\n").unwrap();
        std::env::set_var("FIREDRILL_UNIT_PATRONI_PW", "canary-patroni-0c7e");
        let file = dir.path().join("pw.yaml");
        let yaml = format!(
            r#"name: pw
probes:
  db:
    postgres:
      dsn: "host=127.0.0.1 port=1 user=app dbname=db"
      password-file: "{}"
      mode: {{ read: {{ query: "select 1" }} }}
faults:
  - db-failover:
      patroni: ["http://127.0.0.1:1"]
      patroni-username: admin
      patroni-password-env: FIREDRILL_UNIT_PATRONI_PW
      provider: {{ patroni: {{ action: switchover }} }}
recovery: {{ objective: 10s }}
"#,
            pw.display()
        );
        let env = crate::experiment::Environment::local();
        let vars = Default::default();
        let opts = crate::experiment::LoadOptions {
            env: &env,
            extra_vars: &vars,
            known_environments: None,
            unset_env: Default::default(),
        };
        let loaded =
            crate::experiment::load_experiment_bytes(&file, yaml.as_bytes(), &opts).unwrap();
        register(&loaded.experiment);
        assert_eq!(
            redact::text("login canary-pwfile-61d0 / canary-patroni-0c7e refused"),
            "login *** / *** refused"
        );
    }
}
