//! The command line as a user meets it: every shipped example validates, bad input exits 2
//! with file:line:column and touches nothing, and the README's first command runs a real drill.

mod common;

use common::firedrill;

#[test]
fn every_example_in_experiments_validates() {
    let mut files: Vec<_> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/experiments"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    let out = firedrill().arg("validate").args(&files).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok: ")).count(),
        files.len()
    );
}

#[test]
fn plan_describes_a_proxy_fault_that_only_a_run_can_apply() {
    let out = firedrill()
        .args([
            "plan",
            "experiments/db-down-ci.yaml",
            "--var",
            "pg_upstream=127.0.0.1:5432",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("fault down proxy orders-db: disable the proxy"),
        "{stdout}"
    );
    assert!(
        stdout.contains("which `firedrill run` starts for the drill"),
        "{stdout}"
    );
    assert!(!stdout.contains("not supported"), "{stdout}");
    assert!(stdout.contains("nothing was touched"), "{stdout}");
}

#[test]
fn invalid_files_exit_2_naming_file_line_and_column() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/experiments/invalid"
    );
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 40);
    // An unset secret is invalid for `run` and `plan` only (its own test below).
    let unset_secret = "unset-env-variable.yaml";
    for file in files.iter().filter(|f| !f.ends_with(unset_secret)) {
        let out = firedrill().arg("validate").arg(file).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", file.display());
        let name = file.file_name().unwrap().to_string_lossy();
        // `--> path/name.yaml:LINE:COLUMN`
        let located = stderr.lines().any(|l| {
            let Some(rest) = l.split_once(&format!("{name}:")).map(|(_, r)| r) else {
                return false;
            };
            let mut parts = rest.splitn(3, ':');
            let line = parts.next().and_then(|p| p.parse::<usize>().ok());
            let col = parts
                .next()
                .and_then(|p| p.split_whitespace().next())
                .and_then(|p| p.parse::<usize>().ok());
            l.trim_start().starts_with("--> ") && line >= Some(1) && col >= Some(1)
        });
        assert!(
            located,
            "{}: no file:line:column in\n{stderr}",
            file.display()
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn running_an_invalid_drill_exits_2_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, "name: bad\nprobes: { web: { htp: { url: x } } }\n").unwrap();
    let (out, reports) = common::run_drill(&file, &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.yaml:2:"), "{stderr}");
    assert!(stderr.contains("did you mean `http`"), "{stderr}");
    assert!(!reports.exists(), "an invalid drill writes no report");
}

#[test]
fn the_quickstart_runs_a_real_drill_and_writes_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = firedrill()
        .args(["run", "experiments/quickstart.yaml", "--report-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("quickstart [local] PASSED"), "{stdout}");
    let record = common::only_report(dir.path());
    assert_eq!(record["schema"], "firedrill.run/v1");
    assert_eq!(record["outcome"], "passed");
    let run_dir = dir.path().join("quickstart/local");
    let md = std::fs::read_dir(&run_dir)
        .unwrap()
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "md"))
        .expect("a Markdown report beside the JSON");
    let text = std::fs::read_to_string(md.path()).unwrap();
    assert!(text.starts_with("# quickstart — passed"), "{text}");
    // Reports may name internal hosts: only the owner can read them.
    use std::os::unix::fs::PermissionsExt;
    let mode = md.metadata().unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

/// A lint step in CI must not need production secrets: `validate` checks a `${env:}`
/// reference and warns, at its line and column, that the variable is unset; `plan` and `run`
/// still refuse, exit 2, nothing touched.
#[test]
fn validate_warns_of_an_unset_secret_and_plan_and_run_refuse_it() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/experiments/invalid/unset-env-variable.yaml"
    );
    let out = firedrill()
        .env_remove("FIREDRILL_SURELY_UNSET_TOKEN")
        .args(["validate", file])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: environment variable `FIREDRILL_SURELY_UNSET_TOKEN` is not set")
            && stderr.contains("unset-env-variable.yaml:9:41"),
        "{stderr}"
    );
    // A malformed reference is still an error.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad-ref.yaml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(file)
            .unwrap()
            .replace("${env:FIREDRILL_SURELY_UNSET_TOKEN}", "${env:NOT-A-NAME}"),
    )
    .unwrap();
    let out = firedrill().arg("validate").arg(&bad).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("invalid environment variable name"),
        "{stderr}"
    );

    for command in ["plan", "run"] {
        let out = firedrill()
            .env_remove("FIREDRILL_SURELY_UNSET_TOKEN")
            .args([command, file])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {stderr}");
        assert!(
            stderr
                .contains("error: environment variable `FIREDRILL_SURELY_UNSET_TOKEN` is not set"),
            "{command}: {stderr}"
        );
    }
}

/// A managed database failed over by its provider's CLI: `plan` says what the command will
/// do instead of an empty "candidates" line.
#[test]
fn plan_of_a_command_failover_says_the_command_decides() {
    let out = firedrill()
        .args(["plan", "experiments/db-managed-command.yaml"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("run [\"aws\", \"rds\", \"failover-db-cluster\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("the provider's command decides what fails over"),
        "{stdout}"
    );
    assert!(!stdout.contains("candidates \n"), "{stdout}");
    assert!(!stdout.contains("leader unknown"), "{stdout}");
}

/// `max-duration` is a hard ceiling on the run: a drill still waiting for recovery (timeout
/// 1m) is cut off at 2s, every fault is reverted, and the run ends aborted saying why.
#[test]
fn max_duration_reverts_everything_whatever_the_drill_waits_for() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("fault-in-place");
    let file = dir.path().join("ceiling.yaml");
    std::fs::write(
        &file,
        format!(
            r#"name: ceiling
probes:
  no-marker:
    command: {{ run: [sh, -c, "test ! -e '{m}'"] }}
    every: 50ms
faults:
  - command: {{ run: [touch, "{m}"], revert: [rm, -f, "{m}"] }}
recovery: {{ objective: 1s, timeout: 1m }}
max-duration: 2s
"#,
            m = marker.display()
        ),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let (out, reports) = common::run_drill(&file, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "the ceiling did not cut the run short: {stderr}"
    );
    assert!(!marker.exists(), "the fault was left in place: {stderr}");
    let record = common::only_report(&reports);
    assert_eq!(record["outcome"], "aborted", "{stderr}");
    assert!(
        record["reason"]
            .as_str()
            .unwrap()
            .starts_with("max-duration 2.000s reached"),
        "{}",
        record["reason"]
    );
    assert_ne!(out.status.code(), Some(0));
}

/// `plan` of the quickstart runs its simulated cluster in-process (touching nothing real), so it
/// names the pod a run would kill and the real probe URL, not a placeholder.
#[test]
fn plan_of_the_quickstart_resolves_the_pod_and_the_probe_url_on_its_simulation() {
    let out = firedrill()
        .args(["plan", "experiments/quickstart.yaml"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("chose pod checkout-") && stdout.contains("1 of 3 matching `app=checkout`"),
        "{stdout}"
    );
    assert!(!stdout.contains("not supported"), "{stdout}");
    assert!(
        !stdout.contains("127.0.0.1:1/"),
        "a placeholder URL: {stdout}"
    );
    assert!(stdout.contains("nothing was touched"), "{stdout}");
}

/// Outputs are checked before anything is injected: a report folder that cannot be written
/// (here a file where the folder should be) refuses the run, exit 2, and the fault (a marker
/// file) is never applied. Under umask 000, report folders are still 0700 and files 0600.
#[test]
fn unwritable_outputs_refuse_before_injecting_and_reports_ignore_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("fault-applied");
    let file = dir.path().join("outputs.yaml");
    std::fs::write(
        &file,
        format!(
            r#"name: outputs
probes:
  always:
    command: {{ run: ["true"] }}
    every: 50ms
faults:
  - command: {{ run: [touch, "{m}"], revert: [rm, -f, "{m}"] }}
recovery: {{ objective: 1s, stable-for: 100ms, timeout: 5s }}
"#,
            m = marker.display()
        ),
    )
    .unwrap();
    let not_a_dir = dir.path().join("reports-file");
    std::fs::write(&not_a_dir, "a file, not a folder").unwrap();
    let out = firedrill()
        .arg("run")
        .arg(&file)
        .arg("--report-dir")
        .arg(&not_a_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot write reports to"), "{stderr}");
    assert!(!marker.exists(), "the fault was injected: {stderr}");
    // The CI outputs too: a --junit or --summary path under a file cannot be written.
    for flag in ["--junit", "--summary"] {
        let out = firedrill()
            .arg("run")
            .arg(&file)
            .arg("--report-dir")
            .arg(dir.path().join("fine"))
            .arg(flag)
            .arg(not_a_dir.join("out"))
            .env("FIREDRILL_STATE_DIR", dir.path().join("state"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {stderr}");
        assert!(
            stderr.contains("reports-file/out"),
            "{flag} names the path: {stderr}"
        );
        assert!(!marker.exists(), "{flag}: the fault was injected: {stderr}");
    }

    let reports = dir.path().join("reports");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$0\" run \"$1\" --report-dir \"$2\"")
        .arg(env!("CARGO_BIN_EXE_firedrill"))
        .arg(&file)
        .arg(&reports)
        .env("FIREDRILL_STATE_DIR", dir.path().join("state"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for d in [
        reports.clone(),
        reports.join("outputs"),
        reports.join("outputs/local"),
    ] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    for f in std::fs::read_dir(reports.join("outputs/local"))
        .unwrap()
        .flatten()
    {
        assert_eq!(mode(&f.path()), 0o600, "{}", f.path().display());
    }
}

/// Completions come from the clap definitions: bash, loaded in bash, completes a command and
/// a flag of `run`; the other shells' scripts name the binary.
#[test]
fn the_bash_completion_completes_commands_and_flags() {
    let script = firedrill().args(["completions", "bash"]).output().unwrap();
    assert!(script.status.success());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("firedrill.bash");
    std::fs::write(&file, &script.stdout).unwrap();
    let complete = |words: &[&str]| {
        let line = words.join(" ");
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source '{}'; COMP_WORDS=({line}); COMP_CWORD={}; COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}; _firedrill firedrill '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                file.display(),
                words.len() - 1,
                words[words.len() - 1],
                words[words.len() - 2],
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut got: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        got.sort();
        got
    };
    assert_eq!(complete(&["firedrill", "ru"]), ["run"]);
    assert_eq!(complete(&["firedrill", "rec"]), ["recover"]);
    assert_eq!(
        complete(&["firedrill", "run", "--rep"]),
        ["--repeat", "--report-dir"]
    );
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = firedrill().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("firedrill"),
            "{shell}"
        );
    }
    let out = firedrill().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

/// The man page is generated from the same definitions: firedrill(1) lists every command, and
/// `--dir` writes one page per command whose synopsis is the command as typed.
#[test]
fn man_pages_cover_every_command() {
    let out = firedrill().arg("man").output().unwrap();
    assert!(out.status.success());
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH firedrill 1"), "{page}");
    let commands = [
        "validate",
        "plan",
        "run",
        "recover",
        "halt",
        "sim",
        "status",
        "schedule",
        "deploy",
        "proxy",
        "report",
        "completions",
        "man",
    ];
    for c in commands {
        assert!(page.contains(&format!("firedrill\\-{c}(1)")), "{c}: {page}");
    }
    let dir = tempfile::tempdir().unwrap();
    let out = firedrill()
        .args(["man", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    for c in commands {
        let page = std::fs::read_to_string(dir.path().join(format!("firedrill-{c}.1")))
            .unwrap_or_else(|e| panic!("firedrill-{c}.1: {e}"));
        assert!(
            page.contains(&format!(".TH firedrill-{c} 1")),
            "{c}: {page}"
        );
        assert!(
            page.contains(&format!("\\fBfiredrill {c}\\fR")),
            "{c}: {page}"
        );
    }
    let run = std::fs::read_to_string(dir.path().join("firedrill-run.1")).unwrap();
    assert!(run.contains("\\-\\-report\\-dir"), "{run}");
}

/// `init` writes a first drill of each kind that validates as written, with firedrill.yaml and
/// (for the kinds that run on it) the simulated shop; the pod-kill drill runs at once; nothing
/// is ever written over an existing file.
#[test]
fn init_writes_first_drills_that_validate_and_never_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("drills");
    let init = |args: &[&str]| {
        firedrill()
            .current_dir(dir.path())
            .arg("init")
            .args(args)
            .arg(&folder)
            .output()
            .unwrap()
    };
    for kind in [
        "pod-kill",
        "latency",
        "db-failover",
        "process-kill",
        "command",
        "restore",
    ] {
        let out = init(&["--kind", kind]);
        assert!(
            out.status.success(),
            "{kind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let file = folder.join(format!("{kind}.yaml"));
        let out = firedrill().arg("validate").arg(&file).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{kind}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(folder.join("firedrill.yaml").is_file());
    assert!(folder.join("sim/shop.yaml").is_file());

    // Again: refused, the file as it was.
    std::fs::write(folder.join("pod-kill.yaml"), "mine").unwrap();
    let out = init(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists"));
    assert_eq!(
        std::fs::read_to_string(folder.join("pod-kill.yaml")).unwrap(),
        "mine"
    );
    let out = init(&["--name", "Not_A_Name"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!folder.join("Not_A_Name.yaml").exists());

    // A named pod-kill drill runs on the embedded simulated cluster as written.
    let out = init(&["--name", "first-drill"]);
    assert!(out.status.success());
    let reports = dir.path().join("reports");
    let out = firedrill()
        .env("FIREDRILL_STATE_DIR", dir.path().join("state"))
        .args(["run", "--report-dir"])
        .arg(&reports)
        .arg(folder.join("first-drill.yaml"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("first-drill [local] PASSED"));
}

/// `plan -o json|yaml`: what the text shows, as data a program can read.
#[test]
fn plan_prints_data_for_programs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let plan = |format: &str| {
        let out = firedrill()
            .env("FIREDRILL_STATE_DIR", dir.path().join("state"))
            .args(["plan", "-o", format])
            .arg(root.join("experiments/steps-sim.yaml"))
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let json: serde_json::Value = serde_json::from_slice(&plan("json")).unwrap();
    let yaml: serde_json::Value = serde_yaml::from_slice(&plan("yaml")).unwrap();
    for v in [&json, &yaml] {
        assert_eq!(v["drill"], "steps");
        assert_eq!(v["environment"], "local");
        assert_eq!(v["touched"], "nothing");
        assert_eq!(v["recovery"]["objective_s"], 5.0);
        let faults = v["faults"].as_array().unwrap();
        let names: Vec<&str> = faults.iter().map(|f| f["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["kill-first", "kill-second", "slow-checkout"]);
        assert!(
            faults[0]["resolved"]
                .as_str()
                .unwrap()
                .contains("chose pod"),
            "{v}"
        );
        assert_eq!(faults[2]["step"], "200ms after kill-second");
    }
}

/// `run --scheduled` (what deploy's CronJobs run) keeps the environment's schedule rules as the
/// daemon does: refused in a blackout or outside every window, nothing touched; an on-demand
/// run goes ahead in a blackout and says so.
#[test]
fn a_scheduled_run_keeps_windows_and_blackouts() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("injected");
    std::fs::write(
        dir.path().join("drill.yaml"),
        format!(
            "name: ruled\nenvironments: [qa, night]\nprobes:\n  ok:\n    command: {{ run: [\"true\"] }}\n    every: 50ms\nfaults:\n  - command: {{ run: [touch, \"{}\"] }}\nrecovery: {{ objective: 5s, stable-for: 100ms, timeout: 5s }}\n",
            marker.display()
        ),
    )
    .unwrap();
    let today = chrono::Utc::now().date_naive();
    let away = (chrono::Utc::now()
        .format("%H")
        .to_string()
        .parse::<u32>()
        .unwrap()
        + 12)
        % 24;
    std::fs::write(
        dir.path().join("firedrill.yaml"),
        format!(
            "environments:\n  qa:\n    blackouts: [\"{}..{}\"]\n  night:\n    windows: [\"Mon-Sun {away:02}:00-{away:02}:30\"]\n",
            today.pred_opt().unwrap(),
            today.succ_opt().unwrap()
        ),
    )
    .unwrap();
    let run = |env: &str, scheduled: bool| {
        let mut c = firedrill();
        c.env("FIREDRILL_STATE_DIR", dir.path().join("state"))
            .args(["run", "--env", env, "--report-dir"])
            .arg(dir.path().join("reports"))
            .arg(dir.path().join("drill.yaml"));
        if scheduled {
            c.arg("--scheduled");
        }
        c.output().unwrap()
    };
    for (env, why) in [("qa", "blackout"), ("night", "outside every window")] {
        let out = run(env, true);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{env}: {stderr}");
        assert!(
            stderr.contains("may not start") && stderr.contains(why),
            "{env}: {stderr}"
        );
        assert!(!marker.exists(), "{env}: the fault was injected");
    }
    let out = run("qa", false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("is in a blackout"), "{stderr}");
    assert!(marker.exists(), "the on-demand run injected");
}
