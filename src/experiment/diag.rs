//! Diagnostics: what the loader reports about a file, each with file:line:column, the YAML
//! path of the offending node and, where we can guess it, what the author meant.
//!
//! The rendered form is stable (tests compare it byte for byte), so changes here are
//! user-visible changes.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    Error,
    Warning,
}

/// One finding about one place in one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// YAML path such as `probes.checkout-http.every` or `faults[0].pod-kill.target`;
    /// empty for the document itself.
    pub path: String,
    /// Lowercase, no trailing period.
    pub message: String,
    pub help: Option<String>,
}

/// Longest `quoted` value kept in a message, in characters.
const QUOTE_MAX: usize = 80;

/// Values quoted in messages are the author's text: a 50 KB line or a terminal escape
/// sequence must not reach the terminal as it is. Each `quoted` part is cut to
/// [`QUOTE_MAX`] characters, and control characters other than newlines are escaped.
fn tame(s: &str) -> String {
    if !s.contains('`') && !s.chars().any(|c| c.is_control() && c != '\n') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len().min(4096));
    let mut inside = false;
    let mut count = 0;
    for c in s.chars() {
        if c == '`' {
            inside = !inside;
            count = 0;
        } else if inside {
            count += 1;
            if count == QUOTE_MAX + 1 {
                out.push('…');
            }
            if count > QUOTE_MAX {
                continue;
            }
        }
        if c.is_control() && c != '\n' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

impl Diagnostic {
    pub fn error(file: &Path, line: usize, column: usize, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            file: file.to_path_buf(),
            line: line.max(1),
            column: column.max(1),
            path: String::new(),
            message: tame(&message.into()),
            help: None,
        }
    }

    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    pub fn with_help(mut self, help: Option<String>) -> Self {
        self.help = help.map(|h| tame(&h));
        self
    }

    pub fn warning(mut self) -> Self {
        self.severity = Severity::Warning;
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        writeln!(f, "{sev}: {}", self.message)?;
        write!(
            f,
            "  --> {}:{}:{}",
            self.file.display(),
            self.line,
            self.column
        )?;
        if !self.path.is_empty() {
            write!(f, " at {}", self.path)?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  = help: {help}")?;
        }
        Ok(())
    }
}

/// Every finding of one load, errors and warnings, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn single(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }

    pub fn error_count(&self) -> usize {
        self.0.iter().filter(|d| d.is_error()).count()
    }

    pub fn warning_count(&self) -> usize {
        self.0.len() - self.error_count()
    }

    pub fn has_errors(&self) -> bool {
        self.error_count() > 0
    }

    /// Sorts by file and position so output reads top to bottom; equal positions keep the
    /// order in which they were found.
    pub fn sort(&mut self) {
        self.0
            .sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}\n")?;
        }
        let mut counts = plural(self.error_count(), "error");
        if self.warning_count() > 0 {
            counts = format!("{counts} and {}", plural(self.warning_count(), "warning"));
        }
        let mut files: Vec<&PathBuf> = self.0.iter().map(|d| &d.file).collect();
        files.dedup();
        match files.as_slice() {
            [one] => write!(f, "{counts} in {}", one.display()),
            [] => write!(f, "{counts}"),
            many => write!(f, "{counts} in {} files", many.len()),
        }
    }
}

impl std::error::Error for Diagnostics {}

/// The closest candidate to `word`, if any is close enough to be a plausible typo.
///
/// Jaro-Winkler catches most typos, but it never matches swapped letters in short words
/// (`tpc` for `tcp`), so a small edit distance qualifies too.
pub fn did_you_mean<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let limit = (word.chars().count() / 4).clamp(1, 3);
    let mut best: Option<((usize, f64), &'a str)> = None;
    for c in candidates {
        let jw = strsim::jaro_winkler(word, c);
        let dist = strsim::osa_distance(word, c);
        if jw < 0.8 && dist > limit {
            continue;
        }
        let better = match best {
            None => true,
            Some(((d, s), _)) => dist < d || (dist == d && jw > s),
        };
        if better {
            best = Some(((dist, jw), c));
        }
    }
    best.map(|(_, c)| c)
}

/// Help text for a name that is not one of `valid`: a suggestion when one is close, else the
/// list of what is allowed here.
pub fn suggest<'a, I>(word: &str, valid: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    let valid: Vec<&str> = valid.into_iter().collect();
    if let Some(m) = did_you_mean(word, valid.iter().copied()) {
        return Some(format!("did you mean `{m}`?"));
    }
    if valid.is_empty() {
        return None;
    }
    let list: Vec<String> = valid.iter().map(|v| format!("`{v}`")).collect();
    Some(format!("expected one of {}", list.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_with_path_and_help() {
        let d = Diagnostic::error(Path::new("experiments/x.yaml"), 12, 5, "unknown key `evry`")
            .with_path("probes.checkout-http")
            .with_help(suggest("evry", ["http", "every", "every-during"]));
        assert_eq!(
            d.to_string(),
            "error: unknown key `evry`\n  --> experiments/x.yaml:12:5 at probes.checkout-http\n  = help: did you mean `every`?"
        );
        let all = Diagnostics(vec![d.clone(), d]);
        assert!(all
            .to_string()
            .ends_with("\n\n2 errors in experiments/x.yaml"));
    }

    #[test]
    fn quoted_values_are_shortened_and_escaped() {
        let long = "x".repeat(50_000);
        let d = Diagnostic::error(
            Path::new("a.yaml"),
            1,
            1,
            format!("invalid name `{long}`: why"),
        );
        assert_eq!(
            d.message,
            format!("invalid name `{}…`: why", "x".repeat(80))
        );
        let d = Diagnostic::error(Path::new("a.yaml"), 1, 1, "invalid name `a\u{1b}[2Jb`")
            .with_help(Some("e.g. `\u{7}`".into()));
        assert_eq!(d.message, "invalid name `a\\u{1b}[2Jb`");
        assert_eq!(d.help.as_deref(), Some("e.g. `\\u{7}`"));
    }

    #[test]
    fn suggestion_or_list() {
        assert_eq!(
            suggest("htp", ["http", "tcp"]).as_deref(),
            Some("did you mean `http`?")
        );
        assert_eq!(
            suggest("tpc", ["http", "tcp"]).as_deref(),
            Some("did you mean `tcp`?")
        );
        assert_eq!(
            suggest("zzz", ["http", "tcp"]).as_deref(),
            Some("expected one of `http`, `tcp`")
        );
    }
}
