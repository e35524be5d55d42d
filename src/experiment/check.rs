//! Value checks that serde cannot express: names, Kubernetes label selectors, cron
//! expressions, durations and signals. Each returns a message (and maybe help) that the
//! loader positions at the offending node.

use std::time::Duration;

/// A failed check: lowercase message and optional help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub message: String,
    pub help: Option<String>,
}

impl Invalid {
    pub fn new(message: impl Into<String>) -> Self {
        Invalid {
            message: message.into(),
            help: None,
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

type Check<T = ()> = Result<T, Invalid>;

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters (RFC 1123 label).
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Dot-separated RFC 1123 labels, at most 253 characters.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// A name used in file paths and reports (experiment names).
pub fn dns_label(what: &str, s: &str) -> Check {
    if is_dns_label(s) {
        return Ok(());
    }
    let hint = if s.len() > 63 {
        format!(
            "{what} must be at most 63 characters (this one has {})",
            s.len()
        )
    } else {
        format!("{what} must use lowercase letters, digits and `-`, and start and end with a letter or digit")
    };
    Err(Invalid::new(format!("invalid {what} `{s}`")).help(hint))
}

/// Names of targets and probes: they appear in reports and references.
pub fn entry_name(what: &str, s: &str) -> Check {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(format!("invalid {what} name `{s}`")).help(
            "names use letters, digits, `-`, `_` and `.`, start with a letter or digit and have at most 63 characters",
        ))
    }
}

/// The name part of a label key or a label value: `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`.
fn is_label_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
}

fn label_key(key: &str) -> Check {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if !is_dns_subdomain(p) {
            return Err(
                Invalid::new(format!("invalid label key prefix `{p}` in `{key}`"))
                    .help("a prefix is a DNS subdomain such as `app.kubernetes.io`"),
            );
        }
    }
    if !is_label_token(name) {
        return Err(Invalid::new(format!("invalid label key `{key}`")).help(
            "label names have at most 63 characters: letters, digits, `-`, `_`, `.`, starting and ending with a letter or digit",
        ));
    }
    Ok(())
}

fn label_value(v: &str) -> Check {
    if v.is_empty() || is_label_token(v) {
        Ok(())
    } else {
        Err(Invalid::new(format!("invalid label value `{v}`")).help(
            "label values have at most 63 characters: letters, digits, `-`, `_`, `.`, starting and ending with a letter or digit",
        ))
    }
}

/// Splits at commas outside parentheses.
fn split_requirements(s: &str) -> Check<Vec<&str>> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(Invalid::new("unbalanced `)` in selector"));
                }
            }
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(Invalid::new("unclosed `(` in selector"));
    }
    parts.push(&s[start..]);
    Ok(parts)
}

/// A Kubernetes label selector: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`,
/// `!k`, joined by commas.
pub fn label_selector(sel: &str) -> Check {
    let help = "selectors look like `app=checkout,tier!=canary` or `env in (staging,prod)`";
    let wrap = |e: Invalid| {
        Invalid::new(format!("invalid label selector `{sel}`: {}", e.message))
            .help(e.help.unwrap_or_else(|| help.to_string()))
    };
    if sel.trim().is_empty() {
        return Err(Invalid::new("the label selector is empty")
            .help("an empty selector would match every pod in the namespace; name the pods, e.g. `app=checkout`"));
    }
    for req in split_requirements(sel).map_err(wrap)? {
        requirement(req.trim()).map_err(wrap)?;
    }
    Ok(())
}

fn requirement(req: &str) -> Check {
    if req.is_empty() {
        return Err(Invalid::new("empty requirement (a stray comma?)"));
    }
    if let Some(key) = req.strip_prefix('!') {
        return label_key(key.trim());
    }
    let key_end = req
        .find(|c: char| c == '=' || c == '!' || c == '(' || c.is_whitespace())
        .unwrap_or(req.len());
    let key = &req[..key_end];
    let rest = req[key_end..].trim_start();
    if key.is_empty() {
        return Err(Invalid::new(format!("`{req}` has no label key")));
    }
    label_key(key)?;
    if rest.is_empty() {
        return Ok(());
    }
    for op in ["!=", "==", "="] {
        if let Some(value) = rest.strip_prefix(op) {
            let value = value.trim();
            if value.contains(['=', '!', ' ', '(', ')']) {
                return Err(Invalid::new(format!(
                    "unexpected `{value}` after `{key}{op}`"
                )));
            }
            return label_value(value);
        }
    }
    for op in ["notin", "in"] {
        if let Some(list) = rest.strip_prefix(op) {
            let list = list.trim();
            let Some(inner) = list.strip_prefix('(').and_then(|l| l.strip_suffix(')')) else {
                return Err(Invalid::new(format!(
                    "`{key} {op}` needs a parenthesised list, e.g. `{key} {op} (a,b)`"
                )));
            };
            if inner.trim().is_empty() {
                return Err(Invalid::new(format!("`{key} {op} ()` has no values")));
            }
            for v in inner.split(',') {
                label_value(v.trim())?;
            }
            return Ok(());
        }
    }
    Err(Invalid::new(format!(
        "unexpected `{rest}` after label key `{key}`"
    )))
}

struct CronField {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// Value of names[0].
    names_base: u32,
}

const MONTHS: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const CRON_FIELDS: [CronField; 5] = [
    CronField {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
        names_base: 0,
    },
    CronField {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
        names_base: 0,
    },
    CronField {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
        names_base: 0,
    },
    CronField {
        name: "month",
        min: 1,
        max: 12,
        names: MONTHS,
        names_base: 1,
    },
    CronField {
        name: "day of week",
        min: 0,
        max: 7,
        names: DAYS,
        names_base: 0,
    },
];

fn cron_value(f: &CronField, s: &str) -> Check<u32> {
    if let Some(i) = f.names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return Ok(i as u32 + f.names_base);
    }
    let range = if f.names.is_empty() {
        format!("{}-{}", f.min, f.max)
    } else {
        format!(
            "{}-{} or {}-{}",
            f.min,
            f.max,
            f.names[0],
            f.names[f.names.len() - 1]
        )
    };
    match s.parse::<u32>() {
        Ok(v) if (f.min..=f.max).contains(&v) && s.bytes().all(|b| b.is_ascii_digit()) => Ok(v),
        Ok(_) => Err(Invalid::new(format!(
            "{} `{s}` is out of range ({range})",
            f.name
        ))),
        Err(_) => Err(Invalid::new(format!(
            "{} `{s}` is not a number or name ({range})",
            f.name
        ))),
    }
}

fn cron_field(f: &CronField, text: &str) -> Check {
    for item in text.split(',') {
        if item.is_empty() {
            return Err(Invalid::new(format!(
                "{} `{text}` has an empty list item",
                f.name
            )));
        }
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        if range != "*" {
            if let Some((a, b)) = range.split_once('-') {
                if cron_value(f, a)? > cron_value(f, b)? {
                    return Err(Invalid::new(format!(
                        "{} range `{range}` runs backwards",
                        f.name
                    )));
                }
            } else {
                cron_value(f, range)?;
            }
        }
        if let Some(step) = step {
            match step.parse::<u32>() {
                Ok(s)
                    if s >= 1
                        && s <= f.max - f.min + 1
                        && step.bytes().all(|b| b.is_ascii_digit()) => {}
                _ => {
                    return Err(Invalid::new(format!(
                        "{} step `/{step}` must be a number from 1 to {}",
                        f.name,
                        f.max - f.min + 1
                    )))
                }
            }
        }
    }
    Ok(())
}

/// A classic 5-field cron expression (minute hour day-of-month month day-of-week).
pub fn cron(expr: &str) -> Check {
    let format_help =
        "five fields: minute hour day-of-month month day-of-week, e.g. `0 10 * * MON-FRI`";
    let macros = [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
    ];
    if let Some((m, e)) = macros.iter().find(|(m, _)| *m == expr.trim()) {
        return Err(
            Invalid::new(format!("invalid schedule `{expr}`: `{m}` is not supported"))
                .help(format!("write it as `{e}`")),
        );
    }
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(Invalid::new(format!(
            "invalid schedule `{expr}`: expected 5 fields, found {}",
            fields.len()
        ))
        .help(format_help));
    }
    for (f, text) in CRON_FIELDS.iter().zip(&fields) {
        cron_field(f, text).map_err(|e| {
            Invalid::new(format!("invalid schedule `{expr}`: {}", e.message)).help(format_help)
        })?;
    }
    Ok(())
}

/// Parses a humantime duration with messages for the usual mistakes.
pub fn duration(text: &str) -> Check<Duration> {
    let t = text.trim();
    let help = "write a number and a unit, e.g. `500ms`, `30s`, `2m`, `1h 30m`";
    if t.starts_with('-') {
        return Err(Invalid::new(format!(
            "invalid duration `{text}`: durations cannot be negative"
        )));
    }
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.contains('.') {
        // humantime has no fractions; `1.5s` is a natural thing to try.
        return Err(Invalid::new(format!(
            "invalid duration `{text}`: fractions are not supported"
        ))
        .help("use a smaller unit, e.g. `1500ms` or `1s 500ms` instead of `1.5s`"));
    }
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(
            Invalid::new(format!("invalid duration `{text}`: a unit is required"))
                .help(format!("e.g. `{t}ms` or `{t}s`")),
        );
    }
    humantime::parse_duration(t).map_err(|e| {
        let why = match e {
            humantime::DurationError::UnknownUnit { unit, .. } => {
                format!("unknown unit `{unit}`")
            }
            humantime::DurationError::NumberOverflow => "the number is too large".into(),
            humantime::DurationError::Empty => "it is empty".into(),
            humantime::DurationError::InvalidCharacter(_) => "unexpected character".into(),
            humantime::DurationError::NumberExpected(_) => "expected a number".into(),
        };
        Invalid::new(format!("invalid duration `{text}`: {why}")).help(help)
    })
}

/// Parses a data rate such as `512KB/s`, `1.5MiB/s` or `8Mbit/s` into bytes per second.
/// `KB`, `MB`, `GB` are decimal (as Toxiproxy's KB/s), `KiB`, `MiB`, `GiB` binary, and
/// `kbit`, `Mbit`, `Gbit` bits.
pub fn rate(text: &str) -> Check<u64> {
    let help = "write a number, a unit and `/s`, e.g. `512KB/s`, `1MiB/s` or `8Mbit/s`";
    let bad = |why: &str| Invalid::new(format!("invalid rate `{text}`: {why}")).help(help);
    let t = text.trim();
    let Some(amount) = t.strip_suffix("/s") else {
        return Err(bad("it needs a unit per second"));
    };
    let split = amount
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| bad("it needs a unit"))?;
    let (number, unit) = amount.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad("expected a number"))?;
    let bytes = match unit.trim() {
        "B" => 1.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "bit" => 1.0 / 8.0,
        "kbit" | "Kbit" => 1e3 / 8.0,
        "Mbit" => 1e6 / 8.0,
        "Gbit" => 1e9 / 8.0,
        other => {
            return Err(
                Invalid::new(format!("invalid rate `{text}`: unknown unit `{other}`"))
                    .help("units: B, KB, MB, GB (1000), KiB, MiB, GiB (1024), kbit, Mbit, Gbit"),
            )
        }
    };
    let b = (number * bytes).round();
    if !b.is_finite() || b >= u64::MAX as f64 {
        return Err(bad("the number is too large"));
    }
    Ok(b as u64)
}

/// Signal names a process-kill fault may send.
pub const SIGNALS: &[&str] = &[
    "SIGKILL", "SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGSTOP", "SIGCONT",
];

/// `KILL`, `sigkill` or `SIGKILL` → `SIGKILL`.
pub fn signal(name: &str) -> Check<String> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    let full = format!("SIG{bare}");
    if SIGNALS.contains(&full.as_str()) {
        return Ok(full);
    }
    // Compare without the shared `SIG` prefix, which would make everything look close.
    let bare_names: Vec<&str> = SIGNALS.iter().map(|s| &s[3..]).collect();
    let help = match super::diag::did_you_mean(bare, bare_names.iter().copied()) {
        Some(m) => format!("did you mean `SIG{m}`?"),
        None => format!("supported signals: {}", SIGNALS.join(", ")),
    };
    Err(Invalid::new(format!("unknown signal `{name}`")).help(help))
}

/// A threshold for a metric value: a comparison and a finite number, `>= 50` or `<=0.01`.
pub fn threshold(text: &str) -> Check<super::model::Threshold> {
    use super::model::{CmpOp, Threshold};
    let t = text.trim();
    let help = "write a comparison and a number, e.g. `\">= 50\"` or `\"<= 0.01\"` (quoted: YAML reads a leading `>` or `!` as syntax)";
    let op_len = t
        .find(|c: char| !matches!(c, '<' | '>' | '=' | '!'))
        .unwrap_or(t.len());
    let (op_text, number) = (&t[..op_len], t[op_len..].trim());
    let op = match op_text {
        "" => {
            return Err(
                Invalid::new(format!("invalid threshold `{text}`: no comparison")).help(help),
            )
        }
        "=" | "=>" | "=<" => {
            let meant = match op_text {
                "=" => "==",
                "=>" => ">=",
                _ => "<=",
            };
            return Err(Invalid::new(format!(
                "invalid threshold `{text}`: unknown comparison `{op_text}`"
            ))
            .help(format!("did you mean `{meant}`?")));
        }
        _ => match CmpOp::ALL.iter().find(|o| o.symbol() == op_text) {
            Some(op) => *op,
            None => {
                return Err(Invalid::new(format!(
                    "invalid threshold `{text}`: unknown comparison `{op_text}`"
                ))
                .help("comparisons are >, >=, <, <=, == and !="))
            }
        },
    };
    if number.is_empty() {
        return Err(Invalid::new(format!("invalid threshold `{text}`: no number")).help(help));
    }
    if let Some(n) = number.strip_suffix('%') {
        let fraction = n
            .trim()
            .parse::<f64>()
            .map(|p| format!("`\"{} {}\"`", op.symbol(), p / 100.0))
            .unwrap_or_else(|_| "a fraction".into());
        return Err(Invalid::new(format!(
            "invalid threshold `{text}`: percentages are ambiguous"
        ))
        .help(format!(
            "compare with what the query returns; for a ratio write {fraction}"
        )));
    }
    // Rust also parses `inf` and `NaN`: a threshold against them compares nothing useful.
    match number.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(Threshold { op, value }),
        Ok(_) => Err(Invalid::new(format!(
            "invalid threshold `{text}`: the number must be finite"
        ))),
        Err(_) => Err(Invalid::new(format!(
            "invalid threshold `{text}`: `{number}` is not a number"
        ))
        .help(help)),
    }
}

/// Renders a duration the way people write it (`48h`, `90s`, `250ms`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        return humantime::format_duration(d).to_string();
    }
    for (unit, size) in [("h", 3_600_000u128), ("m", 60_000), ("s", 1_000)] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    #[test]
    fn rates_in_every_unit_and_the_usual_mistakes() {
        assert_eq!(super::rate("512KB/s"), Ok(512_000));
        assert_eq!(super::rate("1.5MiB/s"), Ok(1_572_864));
        assert_eq!(super::rate("8Mbit/s"), Ok(1_000_000));
        assert_eq!(super::rate(" 100 B/s "), Ok(100));
        let e = super::rate("1MB").unwrap_err();
        assert!(e.message.contains("per second"), "{e:?}");
        let e = super::rate("1mb/s").unwrap_err();
        assert_eq!(e.message, "invalid rate `1mb/s`: unknown unit `mb`");
        assert!(super::rate("fast/s").is_err());
        assert!(super::rate("1e400B/s").is_err());
    }

    use super::*;

    #[test]
    fn selectors() {
        for ok in [
            "app=checkout",
            "app==checkout, tier!=canary",
            "env in (staging, prod),!legacy,app.kubernetes.io/name=shop",
            "tier notin (a,b)",
            "has-label",
            "app=",
        ] {
            assert_eq!(label_selector(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "app=check out",
            "app in a,b",
            "env in (staging",
            "-app=x",
            "app=x,",
            "app=-x",
            "Bad_Prefix!/x=1",
            "app =~ x",
            "env in ()",
        ] {
            assert!(label_selector(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cron_expressions() {
        for ok in [
            "0 10 * * MON-FRI",
            "*/5 * * * *",
            "0 0 1,15 jan-jun 0",
            "30 6 * * 7",
            "0 8-18/2 * * *",
        ] {
            assert_eq!(cron(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            cron("0 24 * * *").unwrap_err().message,
            "invalid schedule `0 24 * * *`: hour `24` is out of range (0-23)"
        );
        for bad in [
            "* * * *",
            "60 * * * *",
            "0 0 0 * *",
            "0 0 * 13 *",
            "0 0 * * 8",
            "0 0 * * FRI-MON",
            "*/0 * * * *",
            "@daily",
            "0 0 * * MOM",
            "1,,2 * * * *",
        ] {
            assert!(cron(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_and_signals() {
        assert_eq!(duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(duration("0"), Ok(Duration::ZERO));
        assert!(duration("-5s").unwrap_err().message.contains("negative"));
        assert!(duration("5 parsecs")
            .unwrap_err()
            .message
            .contains("unknown unit `parsecs`"));
        assert!(duration("30")
            .unwrap_err()
            .message
            .contains("unit is required"));
        assert_eq!(signal("term"), Ok("SIGTERM".into()));
        assert!(signal("SIGBOGUS")
            .unwrap_err()
            .help
            .unwrap_or_default()
            .starts_with("supported"));
        assert_eq!(format_duration(Duration::from_secs(48 * 3600)), "48h");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::ZERO), "0ms");
        assert_eq!(
            signal("SIGKIL").unwrap_err().help.as_deref(),
            Some("did you mean `SIGKILL`?")
        );
    }

    #[test]
    fn names() {
        assert!(is_dns_label("checkout-pod-kill"));
        assert!(!is_dns_label("Checkout"));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(is_dns_subdomain("app.kubernetes.io"));
    }

    #[test]
    fn thresholds() {
        use crate::experiment::CmpOp;
        let t = threshold(">= 50").unwrap();
        assert_eq!((t.op, t.value), (CmpOp::Ge, 50.0));
        let t = threshold("<=0.01").unwrap();
        assert_eq!((t.op, t.value), (CmpOp::Le, 0.01));
        let t = threshold(" != -1e3 ").unwrap();
        assert_eq!((t.op, t.value), (CmpOp::Ne, -1000.0));
        assert!(t.holds(0.0) && !t.holds(-1000.0));
        assert!(threshold("> 1").unwrap().holds(1.5));
        assert!(!threshold("> 1").unwrap().holds(f64::NAN));
        assert!(!threshold("!= 1").unwrap().holds(f64::NAN));

        let err = |s: &str| threshold(s).unwrap_err();
        assert!(err("50").message.contains("no comparison"));
        assert_eq!(err("=> 50").help.as_deref(), Some("did you mean `>=`?"));
        assert!(err("<> 5").message.contains("unknown comparison `<>`"));
        assert!(err(">=").message.contains("no number"));
        assert!(err(">= fifty").message.contains("`fifty` is not a number"));
        assert!(err(">= NaN").message.contains("finite"));
        assert!(err("<= 1%").help.unwrap().contains("<= 0.01"));
    }
}
