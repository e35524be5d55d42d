//! `firedrill init`: a first drill of a chosen kind, written into a folder with what it needs
//! (firedrill.yaml; the JSON Schemas that the files' `# yaml-language-server: $schema=` lines
//! name, in `schema/`; the simulated shop for the kinds that run on it), never over an existing
//! file. The templates are files of the repository (templates/init/), and every one validates
//! as written (tests/cli.rs).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::exit::Exit;

/// The kinds of first drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Kill a pod; runs as is on the embedded simulated cluster.
    PodKill,
    /// Delay responses through firedrill's fault proxy; runs as is on the embedded cluster.
    Latency,
    /// A Patroni switchover with a writer measuring RTO and lost writes.
    DbFailover,
    /// SIGKILL a supervised process on this machine.
    ProcessKill,
    /// Your own fault: a command that breaks and one that mends.
    Command,
    /// Restore the newest pgBackRest backup into a scratch instance and validate it.
    Restore,
}

impl Kind {
    fn template(self) -> &'static str {
        match self {
            Kind::PodKill => include_str!("../../templates/init/pod-kill.yaml"),
            Kind::Latency => include_str!("../../templates/init/latency.yaml"),
            Kind::DbFailover => include_str!("../../templates/init/db-failover.yaml"),
            Kind::ProcessKill => include_str!("../../templates/init/process-kill.yaml"),
            Kind::Command => include_str!("../../templates/init/command.yaml"),
            Kind::Restore => include_str!("../../templates/init/restore.yaml"),
        }
    }

    fn default_name(self) -> &'static str {
        match self {
            Kind::PodKill => "pod-kill",
            Kind::Latency => "latency",
            Kind::DbFailover => "db-failover",
            Kind::ProcessKill => "process-kill",
            Kind::Command => "command",
            Kind::Restore => "restore",
        }
    }

    /// Runs on the embedded simulated cluster, whose scenario it needs beside it.
    fn simulated(self) -> bool {
        matches!(self, Kind::PodKill | Kind::Latency)
    }
}

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The kind of drill.
    #[arg(long, value_enum, default_value = "pod-kill")]
    pub kind: Kind,
    /// The drill's name and file name (lowercase letters, digits and `-`) [default: the kind].
    #[arg(long)]
    pub name: Option<String>,
    /// The folder of experiments to write into (created if missing).
    #[arg(default_value = "experiments")]
    pub dir: PathBuf,
}

pub fn init(args: &InitArgs) -> Exit {
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| args.kind.default_name().to_string());
    if let Err(inv) = crate::experiment::check::dns_label("drill name", &name) {
        eprintln!(
            "error: {}\n  = help: lowercase letters, digits and `-`, e.g. `--name checkout-pod-kill`\nnothing was written",
            inv.message
        );
        return Exit::Invalid;
    }
    let drill = args.dir.join(format!("{name}.yaml"));
    if drill.exists() {
        eprintln!(
            "error: {} exists\n  = help: choose another name with --name, or another folder\nnothing was written",
            drill.display()
        );
        return Exit::Invalid;
    }
    let text = args
        .kind
        .template()
        .replace("{name}", &name)
        .replace("{path}", &drill.display().to_string());
    let mut files: Vec<(PathBuf, String)> = vec![(drill.clone(), text)];
    let env = args.dir.join("firedrill.yaml");
    if !env.exists() {
        files.push((
            env,
            include_str!("../../templates/init/firedrill.yaml").into(),
        ));
    }
    // The JSON Schemas the files' `# yaml-language-server: $schema=schema/...` lines name, as
    // this binary reads them (kept if present: they may be a newer firedrill's).
    for (which, schema) in [
        ("experiment", crate::experiment::schema::experiment_schema()),
        (
            "environments",
            crate::experiment::schema::environments_schema(),
        ),
    ] {
        let path = args.dir.join(format!("schema/{which}.json"));
        if !path.exists() {
            let text = serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n";
            files.push((path, text));
        }
    }
    let scenario = args.dir.join("sim/shop.yaml");
    if args.kind.simulated() && !scenario.exists() {
        files.push((
            scenario,
            include_str!("../../experiments/sim/shop.yaml").into(),
        ));
    }
    for (path, text) in &files {
        if let Err(e) = write_new(path, text) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return Exit::Internal;
        }
        println!("wrote {}", path.display());
    }
    println!(
        "next: firedrill validate {d}; firedrill plan {d}; firedrill run {d}",
        d = drill.display()
    );
    Exit::Passed
}

/// Creates `path` (and its folder) with `text`; never replaces a file.
fn write_new(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(text.as_bytes())
}
