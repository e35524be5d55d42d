//! The second safety review, end to end through the binary: secrets in every sink (CI outputs,
//! load errors, a secret that collides with a word of the record), every catchable terminating
//! signal and a closed stderr while a fault is held, output commands on a closed pipe, a state
//! directory another local user could write to, torn journal lines and reused pids.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::sticky::Sticky;
use common::{finish, firedrill, signal, text, wait_for};

/// Every file under `dir`, with its text ([`common::texts_under`], paths as text).
fn files_under(dir: &Path) -> Vec<(String, String)> {
    common::texts_under(dir)
        .into_iter()
        .map(|(p, t)| (p.display().to_string(), t))
        .collect()
}

// ---- secrets ----

/// A secret `pass` turns the outcome `passed` into `***ed` when masked blindly; the record
/// must still be written, masked where a value carries a secret and nowhere else.
#[test]
fn a_secret_that_collides_with_a_word_of_the_record_masks_values_only() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("collide.yaml");
    std::fs::write(
        &file,
        r#"name: collide
probes:
  ok:
    command: { run: ["true"] }
    every: 50ms
faults:
  - command: { run: [echo, "${env:FIREDRILL_TEST_CANARY}", "${env:FIREDRILL_TEST_WORD}"] }
recovery: { objective: 5s, stable-for: 100ms, timeout: 10s }
"#,
    )
    .unwrap();
    let reports = dir.path().join("reports");
    let out = firedrill()
        .env("FIREDRILL_STATE_DIR", dir.path().join("state"))
        .env("FIREDRILL_TEST_CANARY", "canary-collide-4b1e77")
        .env("FIREDRILL_TEST_WORD", "pass")
        .args(["run", "--report-dir"])
        .arg(&reports)
        .arg("--junit")
        .arg(dir.path().join("junit.xml"))
        .arg("--summary")
        .arg(dir.path().join("summary.md"))
        .arg(&file)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let record = common::only_report(&reports);
    assert_eq!(record["outcome"], "passed", "enum words are never masked");
    let mut all = files_under(dir.path());
    all.push(("stdout".into(), stdout));
    all.push(("stderr".into(), stderr));
    let json = all
        .iter()
        .find(|(p, _)| p.ends_with(".json"))
        .map(|(_, t)| t.clone())
        .unwrap();
    assert!(json.contains("***"), "the fault's argv was masked: {json}");
    for (name, t) in &all {
        assert!(
            !t.contains("canary-collide-4b1e77"),
            "the secret leaked into {name}:\n{t}"
        );
    }
    assert!(
        dir.path().join("junit.xml").exists() && dir.path().join("summary.md").exists(),
        "CI outputs were written"
    );
}

/// Masking fails closed: a secret that is a word of the record's structure in more places
/// than can be tried one by one ("recovered": every trial's outcome and its timeline event)
/// leaves no report, JUnit or summary written at all, says why, and exits 4.
#[test]
fn a_record_that_cannot_be_masked_is_not_written_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("unmaskable.yaml");
    std::fs::write(
        &file,
        r#"name: unmaskable
probes:
  ok:
    command: { run: ["true"] }
    every: 20ms
faults:
  - command: { run: [echo, "${env:FIREDRILL_TEST_WORD}"] }
recovery: { objective: 5s, stable-for: 30ms, timeout: 10s }
repeat: 40
cooldown: 0s
"#,
    )
    .unwrap();
    let reports = dir.path().join("reports");
    let out = firedrill()
        .env("FIREDRILL_STATE_DIR", dir.path().join("state"))
        .env("FIREDRILL_TEST_WORD", "recovered")
        .args(["run", "--report-dir"])
        .arg(&reports)
        .arg("--junit")
        .arg(dir.path().join("junit.xml"))
        .arg("--summary")
        .arg(dir.path().join("summary.md"))
        .arg(&file)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stdout}{stderr}");
    assert!(
        stderr.contains("cannot be masked, so it was not written"),
        "{stderr}"
    );
    let written: Vec<String> = files_under(dir.path())
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| {
            [".json", ".html", ".md", ".xml"]
                .iter()
                .any(|ext| p.ends_with(ext))
        })
        .collect();
    assert!(written.is_empty(), "written: {written:?}");
}

/// A `${env:}` value in a field the loader rejects is in the error message: it must be masked
/// by `validate`, `plan`, `run` and `schedule` alike.
#[test]
fn load_errors_never_show_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let drills = dir.path().join("drills");
    std::fs::create_dir(&drills).unwrap();
    let file = drills.join("bad.yaml");
    std::fs::write(
        &file,
        r#"name: bad
schedule: "0 3 * * *"
probes:
  api:
    http:
      url: "http://127.0.0.1:1/"
      timeout: "${env:FIREDRILL_TEST_CANARY}"
    every: 100ms
faults:
  - command: { run: ["true"] }
recovery: { objective: 5s, timeout: 10s }
"#,
    )
    .unwrap();
    let canary = "canary-load-9d21f0";
    let cmd = |args: &[&str]| {
        let mut c = firedrill();
        c.env("FIREDRILL_STATE_DIR", dir.path().join("state"))
            .env("FIREDRILL_TEST_CANARY", canary)
            .args(args);
        c
    };
    for sub in ["validate", "plan", "run"] {
        let out = cmd(&[sub]).arg(&file).output().unwrap();
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{sub}: {stdout}{stderr}");
        assert!(
            stderr.contains("invalid duration `***`"),
            "{sub} names the masked value: {stderr}"
        );
        assert!(
            !stdout.contains(canary) && !stderr.contains(canary),
            "{sub} printed the secret:\n{stdout}{stderr}"
        );
    }
    let mut daemon = cmd(&["schedule", "--report-dir"])
        .arg(dir.path().join("reports"))
        .arg(&drills)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = daemon.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut all = String::new();
        let _ = stderr.read_to_string(&mut all);
        all
    });
    // The catalog is read (and its errors printed) at start; then the daemon waits.
    std::thread::sleep(Duration::from_millis(1500));
    signal(daemon.id(), "TERM");
    let _ = daemon.wait();
    let stderr = reader.join().unwrap();
    assert!(stderr.contains("not scheduled"), "{stderr}");
    assert!(
        !stderr.contains(canary),
        "schedule printed the secret:\n{stderr}"
    );
}

// ---- signals and closed streams ----

/// How a held fault is interrupted.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Signal(&'static str),
    /// The reader of stderr goes away (a closed terminal, `| head` on 2>&1), a SIGPIPE is
    /// sent for good measure, then SIGTERM: every print from then on fails.
    ClosedStderr,
}

fn stop_held_fault(stop: Stop) {
    let d = Sticky::new("");
    let mut child = d.spawn_run();
    wait_for("the injection", Duration::from_secs(30), || {
        d.injected().exists()
    });
    match stop {
        Stop::Signal(sig) => signal(child.id(), sig),
        Stop::ClosedStderr => {
            drop(child.stderr.take());
            signal(child.id(), "PIPE");
            std::thread::sleep(Duration::from_millis(100));
            signal(child.id(), "TERM");
        }
    }
    let out = finish(child, Duration::from_secs(30));
    let (_, stderr) = text(&out);
    assert!(
        !d.injected().exists(),
        "{stop:?}: the fault was left in place (exit {:?})\n{stderr}",
        out.status
    );
    assert_eq!(d.reverts(), 1, "{stop:?}: reverted once\n{stderr}");
    assert_eq!(out.status.code(), Some(3), "{stop:?}: {stderr}");
    let rec = d.cmd().args(["recover", "--all"]).output().unwrap();
    assert!(
        text(&rec).0.contains("nothing to recover"),
        "{stop:?}: {:?}",
        text(&rec)
    );
}

#[test]
fn every_terminating_signal_and_a_closed_stderr_revert_a_held_fault() {
    let cases = [
        Stop::Signal("HUP"),
        Stop::Signal("INT"),
        Stop::Signal("TERM"),
        Stop::Signal("QUIT"),
        Stop::Signal("USR1"),
        Stop::Signal("USR2"),
        Stop::ClosedStderr,
    ];
    let threads: Vec<_> = cases
        .into_iter()
        .map(|c| (c, std::thread::spawn(move || stop_held_fault(c))))
        .collect();
    let mut failed = Vec::new();
    for (c, t) in threads {
        if t.join().is_err() {
            failed.push(format!("{c:?}"));
        }
    }
    assert!(
        failed.is_empty(),
        "left a fault behind: {}",
        failed.join(", ")
    );
}

/// A pipe whose reader is already gone.
fn closed_pipe() -> std::io::PipeWriter {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer
}

#[test]
fn output_commands_exit_quietly_on_a_closed_stdout() {
    let d = Sticky::new("");
    for args in [
        vec!["plan".to_string(), d.file().display().to_string()],
        vec!["validate".to_string(), d.file().display().to_string()],
        vec!["halt".to_string(), "--release".to_string()],
    ] {
        let out = d
            .cmd()
            .args(&args)
            .stdout(closed_pipe())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let (_, stderr) = text(&out);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
        assert_ne!(out.status.code(), Some(101), "{args:?}: {stderr}");
        // As a tool ended by SIGPIPE: 128 + 13.
        assert_eq!(out.status.code(), Some(141), "{args:?}: {stderr}");
    }
}

// ---- journals: torn lines and reused pids ----

/// A journal of run `run_id` of drill `name` (scope `local/experiment/<name>`) whose one
/// entry's revert appends a line to `marker`. `header_extra` is spliced into the header.
fn journal_lines(
    run_id: &str,
    name: &str,
    pid: u32,
    header_extra: &str,
    marker: &Path,
) -> Vec<String> {
    let revert = serde_json::json!({
        "action": "command",
        "argv": ["sh", "-c", format!("echo x >> '{}'", marker.display())],
        "timeout": "5s",
    });
    vec![
        format!(
            r#"{{"type":"open","run_id":"{run_id}","pid":{pid},"experiment":"{name}","environment":"local","scopes":["local/experiment/{name}"],"since":"2026-01-01T00:00:00Z"{header_extra}}}"#
        ),
        serde_json::json!({"type": "intent", "seq": 1, "fault": "command x", "what": "run x", "where": "here", "revert": revert}).to_string(),
        serde_json::json!({"type": "applied", "seq": 1, "revert": revert}).to_string(),
    ]
}

fn write_journal(state: &Path, run_id: &str, lines: &[String]) -> PathBuf {
    let dir = state.join("journal");
    std::fs::create_dir_all(&dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let path = dir.join(format!("{run_id}.jsonl"));
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn lines_of(p: &Path) -> usize {
    std::fs::read_to_string(p)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[test]
fn a_torn_line_in_the_middle_of_a_journal_loses_no_intact_revert_plan() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let marker = dir.path().join("reverted");
    // A crash tore a line; the next writer appended to the torn tail (no newline between).
    let mut lines = journal_lines("torn-1", "torn", 999_999_999, "", &marker);
    lines.insert(1, r#"{"type":"intent","se"#.to_string());
    let glued = format!("{{\"type\":\"reverted\",\"se{}", lines[3]);
    lines[3] = glued;
    write_journal(&state, "torn-1", &lines);
    let out = firedrill()
        .env("FIREDRILL_STATE_DIR", &state)
        .args(["recover", "--all"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(
        lines_of(&marker),
        1,
        "the intact revert plan ran: {stdout}{stderr}"
    );
    assert!(
        stderr.contains("torn"),
        "the torn lines are named: {stderr}"
    );

    // `run` recovers the stale journal of its scope the same way instead of skipping it.
    let marker2 = dir.path().join("reverted-by-run");
    let mut lines = journal_lines("torn-2", "torn", 999_999_999, "", &marker2);
    lines.insert(2, "garbage".to_string());
    write_journal(&state, "torn-2", &lines);
    let file = dir.path().join("torn.yaml");
    std::fs::write(
        &file,
        "name: torn\nprobes:\n  ok:\n    command: { run: [\"true\"] }\n    every: 50ms\nfaults:\n  - command: { run: [\"true\"] }\nrecovery: { objective: 5s, stable-for: 100ms, timeout: 10s }\n",
    )
    .unwrap();
    let out = firedrill()
        .env("FIREDRILL_STATE_DIR", &state)
        .args(["run", "--report-dir"])
        .arg(dir.path().join("reports"))
        .arg(&file)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(lines_of(&marker2), 1, "{stderr}");
}

/// This process's start time (clock ticks after boot, field 22 of /proc/PID/stat).
fn start_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split(' ').nth(19).unwrap().parse().unwrap()
}

#[test]
fn recover_does_not_trust_a_reused_pid() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // Pid 1 and the test's own pid exist, but neither started when these runs did.
    let me = std::process::id();
    let mut markers = Vec::new();
    for (run, pid) in [("reused-1", 1), ("reused-2", me)] {
        let marker = dir.path().join(format!("{run}-reverted"));
        let extra = format!(r#","start_time":{}"#, start_ticks(me) + 7);
        write_journal(&state, run, &journal_lines(run, run, pid, &extra, &marker));
        markers.push(marker);
    }
    let out = firedrill()
        .env("FIREDRILL_STATE_DIR", &state)
        .args(["recover", "--all"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    for m in &markers {
        assert_eq!(lines_of(m), 1, "{}: {stdout}{stderr}", m.display());
    }
    assert!(!stdout.contains("still running"), "{stdout}");
}

// ---- a state directory another local user can write to ----

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a shell line as `nobody`.
fn as_nobody(line: &str) {
    let ok = Command::new("runuser")
        .args(["-u", "nobody", "--", "sh", "-c", line])
        .status()
        .unwrap();
    assert!(ok.success(), "as nobody: {line}");
}

/// A root run against a state directory `nobody` could write to must refuse (exit 2, saying
/// how to fix it) and execute nothing that was planted there.
#[test]
fn a_state_dir_another_user_can_write_is_refused_and_nothing_planted_runs() {
    if !is_root() {
        eprintln!("skipped: needs root to plant files as another user");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let d = Sticky::new("");
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let pwned = d.dir.path().join("pwned");
    let journal = journal_lines("evil-1", "sticky", 999_999_999, "", &pwned).join("\n") + "\n";
    let plant = |state: &Path| {
        let planted = d.dir.path().join("planted.jsonl");
        std::fs::write(&planted, &journal).unwrap();
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o644)).unwrap();
        as_nobody(&format!(
            "mkdir -p '{s}/journal' && cp '{p}' '{s}/journal/evil-1.jsonl'",
            s = state.display(),
            p = planted.display()
        ));
    };
    let check = |what: &str, state: &Path| {
        for args in [vec!["recover", "--all"], vec!["run"]] {
            let mut c = firedrill();
            c.env("FIREDRILL_STATE_DIR", state).args(&args);
            if args[0] == "run" {
                c.arg(d.file())
                    .arg("--report-dir")
                    .arg(d.dir.path().join("reports"));
            }
            let out = c.output().unwrap();
            let (stdout, stderr) = text(&out);
            assert!(
                !pwned.exists(),
                "{what}: {args:?} executed a planted journal\n{stdout}{stderr}"
            );
            assert!(
                !d.injected().exists(),
                "{what}: {args:?} ran the drill\n{stderr}"
            );
            assert_eq!(
                out.status.code(),
                Some(2),
                "{what}: {args:?}: {stdout}{stderr}"
            );
            assert!(
                stderr.contains(&state.display().to_string()) && stderr.contains("help"),
                "{what}: says which directory and how to fix it: {stderr}"
            );
        }
    };

    // 1. The state directory was created by another user (in a shared, sticky directory
    //    such as /tmp).
    let shared = d.dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let theirs = shared.join("theirs");
    plant(&theirs);
    check("owned by nobody", &theirs);

    // 2. Root's own directory, but writable by everyone.
    let open = d.dir.path().join("open");
    std::fs::create_dir_all(open.join("journal")).unwrap();
    for p in [&open, &open.join("journal")] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    plant(&open);
    check("world-writable", &open);

    // 3. Root's private directory, but a lock file is a symlink to a file it must not
    //    overwrite.
    let private = d.dir.path().join("private");
    std::fs::create_dir_all(private.join("locks")).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let victim = d.dir.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let scope = "local/experiment/sticky";
    let tag: String = {
        use sha2::Digest;
        sha2::Sha256::digest(scope.as_bytes())
            .iter()
            .take(4)
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    std::os::unix::fs::symlink(
        &victim,
        private
            .join("locks")
            .join(format!("local_experiment_sticky-{tag}.lock")),
    )
    .unwrap();
    let out = d
        .cmd()
        .env("FIREDRILL_STATE_DIR", &private)
        .arg("run")
        .arg(d.file())
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "precious",
        "{stderr}"
    );
    assert!(!d.injected().exists(), "{stderr}");
    assert_eq!(out.status.code(), Some(2), "{stderr}");
}

#[test]
fn recover_leaves_a_running_drill_alone() {
    let d = Sticky::new("");
    let child = d.spawn_run();
    wait_for("the injection", Duration::from_secs(30), || {
        d.injected().exists()
    });
    let out = d.cmd().args(["recover", "--all"]).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("still running"), "{stdout}{stderr}");
    assert!(d.injected().exists() && d.reverts() == 0, "{stdout}");
    signal(child.id(), "TERM");
    let out = finish(child, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(3), "{:?}", text(&out));
    assert_eq!(d.reverts(), 1);
}

// ---- process-kill with a stopping signal ----

/// The state letter of a process (`T` stopped), field 3 of /proc/PID/stat.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

/// A `sleep` with a command line no other process has.
fn sleeper(tag: &str) -> (Child, String) {
    let arg = format!("{}.{}", 300 + tag.len(), std::process::id());
    let child = Command::new("sleep").arg(&arg).spawn().unwrap();
    let line = format!("sleep {arg}");
    let pid = child.id();
    wait_for("the sleeper's exec", Duration::from_secs(5), || {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).starts_with("sleep"))
    });
    (child, line)
}

#[test]
fn a_process_stopped_by_process_kill_is_continued_by_the_revert() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, line) = sleeper("stop");
    let file = dir.path().join("stop.yaml");
    std::fs::write(
        &file,
        format!(
            r#"name: stop
targets:
  sleeper:
    process: {{ command-line: "{line}" }}
probes:
  ok:
    command: {{ run: ["true"] }}
    every: 50ms
faults:
  - process-kill: {{ target: sleeper, signal: SIGSTOP }}
recovery: {{ objective: 5s, stable-for: 100ms, timeout: 10s }}
"#
        ),
    )
    .unwrap();
    let out = firedrill()
        .env("FIREDRILL_STATE_DIR", dir.path().join("state"))
        .args(["run", "--report-dir"])
        .arg(dir.path().join("reports"))
        .arg(&file)
        .output()
        .unwrap();
    let state = proc_state(child.id());
    let _ = child.kill();
    let _ = child.wait();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_ne!(state, Some('T'), "the process was left stopped\n{stderr}");
    assert!(stderr.contains("SIGCONT"), "{stderr}");
}

#[test]
fn a_kill_by_command_line_is_capped_like_pod_kill() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, line) = sleeper("cap");
    let arg = line.trim_start_matches("sleep ").to_string();
    let mut b = Command::new("sleep").arg(&arg).spawn().unwrap();
    let bpid = b.id();
    wait_for("the second sleeper's exec", Duration::from_secs(5), || {
        std::fs::read(format!("/proc/{bpid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).starts_with("sleep"))
    });
    let drill = |extra: &str| {
        let file = dir.path().join("cap.yaml");
        std::fs::write(
            &file,
            format!(
                r#"name: cap
targets:
  sleepers:
    process: {{ command-line: "{line}"{extra} }}
probes:
  ok:
    command: {{ run: ["true"] }}
    every: 50ms
faults:
  - process-kill: {{ target: sleepers, signal: SIGKILL }}
recovery: {{ objective: 5s, stable-for: 100ms, timeout: 10s }}
"#
            ),
        )
        .unwrap();
        firedrill()
            .env("FIREDRILL_STATE_DIR", dir.path().join("state"))
            .args(["run", "--report-dir"])
            .arg(dir.path().join("reports"))
            .arg(&file)
            .output()
            .unwrap()
    };
    let out = drill("");
    let alive = (
        a.try_wait().unwrap().is_none(),
        b.try_wait().unwrap().is_none(),
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(
        alive,
        (true, true),
        "nothing was killed past the cap\n{stderr}"
    );
    assert_ne!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stderr.contains("max-targets"), "{stdout}{stderr}");
    // Raising the cap on the target allows it.
    let out = drill(", max-targets: 2");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let _ = (a.wait(), b.wait());
}

// ---- stopping during an injection ----

#[test]
fn sigterm_cancels_an_injection_in_flight_and_reverts_its_maybe_applied_effect() {
    let d = Sticky::new("");
    // The fault takes effect at once, but its call takes 30s to return.
    let yaml = std::fs::read_to_string(d.file()).unwrap().replace(
        &format!("run: [touch, \"{}\"]", d.injected().display()),
        &format!(
            "run: [sh, -c, \"touch '{}'; sleep 30\"]",
            d.injected().display()
        ),
    );
    let yaml = yaml.replace("timeout: 5s", "timeout: 60s");
    assert!(yaml.contains("sleep 30"));
    std::fs::write(d.file(), yaml).unwrap();
    let child = d.spawn_run();
    wait_for("the injection", Duration::from_secs(30), || {
        d.injected().exists()
    });
    let sent = Instant::now();
    signal(child.id(), "TERM");
    let out = finish(child, Duration::from_secs(10));
    let took = sent.elapsed();
    let (_, stderr) = text(&out);
    assert!(
        took < Duration::from_secs(5),
        "stopping took {took:?}\n{stderr}"
    );
    assert!(!d.injected().exists(), "{stderr}");
    assert_eq!(d.reverts(), 1, "{stderr}");
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("may have been applied"), "{stderr}");
}

// ---- smaller ones ----

#[test]
fn an_absurd_steady_state_timeout_is_refused_not_a_panic() {
    let d = Sticky::new("");
    let out = d
        .cmd()
        .args(["run", "--steady-state-timeout", "500000000000y"])
        .arg(d.file())
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("steady-state-timeout"), "{stderr}");
    assert!(!d.injected().exists());
}

#[test]
fn a_proxy_listening_beyond_loopback_is_said_so() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.yaml");
    std::fs::write(
        &file,
        r#"name: open-proxy
proxy:
  db: { listen: "0.0.0.0:0", upstream: "127.0.0.1:5432" }
probes:
  ok:
    command: { run: ["true"] }
faults:
  - latency: { proxy: db, latency: 100ms, duration: 1s }
recovery: { objective: 5s }
"#,
    )
    .unwrap();
    let out = firedrill().arg("validate").arg(&file).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains("0.0.0.0:0") && stderr.contains("other machines"),
        "{stderr}"
    );
}

/// A panic on another thread than the main one (a task's, which the process survives) must
/// neither close the live journal nor let the drill carry on as if nothing happened.
#[test]
fn a_panic_on_another_thread_stops_the_drill_and_leaves_its_journal_to_it() {
    let d = Sticky::new("");
    let out = d
        .cmd()
        .env("FIREDRILL_DEBUG_THREAD_PANIC_AFTER_INJECT", "1")
        .arg("run")
        .arg(d.file())
        .arg("--report-dir")
        .arg(d.dir.path().join("reports"))
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(stderr.contains("reverting every fault"), "{stderr}");
    assert!(!d.injected().exists(), "{stderr}");
    assert_eq!(out.status.code(), Some(3), "aborted, not judged: {stderr}");
    let record = common::only_report(&d.dir.path().join("reports"));
    assert_eq!(record["outcome"], "aborted", "{stderr}");
    let journal = std::fs::read_dir(d.state().join("journal"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let closed = std::fs::read_to_string(&journal)
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"type\":\"closed\""))
        .count();
    assert_eq!(closed, 1, "closed once, by the drill");
    let rec = d.cmd().args(["recover", "--all"]).output().unwrap();
    assert!(
        text(&rec).0.contains("nothing to recover"),
        "{:?}",
        text(&rec)
    );
}

/// A runner whose clock is an hour behind keeps renewing its Lease: by this machine's clock
/// the lease looks expired, but it is alive and must not be taken over. A lease nobody renews
/// is taken over once it was watched for its whole duration.
#[test]
fn a_lease_is_judged_by_its_renewals_not_by_a_skewed_clock() {
    use k8s_openapi::api::coordination::v1::Lease;
    let c = common::sim::Sim::new(
        "kubelet: { schedule-delay: 10ms, start-delay: 50ms, ready-delay: 50ms }\nnamespaces:\n  shop:\n    deployments:\n      web: { replicas: 3, labels: { app: web } }\n",
        3,
    );
    std::fs::write(
        c.dir.path().join("firedrill.yaml"),
        "environments:\n  staging:\n    kube-context: firedrill-sim\n",
    )
    .unwrap();
    c.write_kubeconfig("kubeconfig", &["firedrill-sim"], "firedrill-sim");
    let file = c.dir.path().join("web-kill.yaml");
    std::fs::write(
        &file,
        r#"name: web-kill
environments: [staging]
targets:
  web:
    kubernetes: { namespace: shop, selector: app=web, count: 1, max-targets: 1 }
probes:
  web-ready:
    kubernetes: { deployment: shop/web, ready: all }
faults:
  - pod-kill: { target: web, grace-period: 0s }
recovery: { objective: 10s, stable-for: 300ms, timeout: 30s }
"#,
    )
    .unwrap();
    let run = || {
        firedrill()
            .env("KUBECONFIG", c.dir.path().join("kubeconfig"))
            .env("FIREDRILL_STATE_DIR", c.dir.path().join("state"))
            .args(["run", "--env", "staging", "--report-dir"])
            .arg(c.dir.path().join("reports"))
            .arg(&file)
            .output()
            .unwrap()
    };
    let client = c.rt.block_on(c.handle().kube_client()).unwrap();
    let api = kube::Api::<Lease>::namespaced(client, "shop");
    let hour_ago = || {
        (chrono::Utc::now() - chrono::Duration::hours(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    };
    let lease = |duration: i32| -> Lease {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "firedrill-drill", "namespace": "shop", "annotations": {
                "firedrill.io/holder": "{\"pid\":42,\"run_id\":\"skewed-1\",\"experiment\":\"web-kill\",\"since\":\"2026-01-01T00:00:00Z\",\"host\":\"elsewhere\"}"}},
            "spec": {"holderIdentity": "other", "leaseDurationSeconds": duration, "renewTime": hour_ago()}}))
        .unwrap()
    };
    c.rt.block_on(api.create(&Default::default(), &lease(60)))
        .unwrap();
    let renewing = tokio_util::sync::CancellationToken::new();
    let (stop, api2) = (renewing.clone(), api.clone());
    c.rt.spawn(async move {
        while !stop.is_cancelled() {
            let patch = serde_json::json!({"spec": {"renewTime": hour_ago()}});
            let _ = api2
                .patch(
                    "firedrill-drill",
                    &Default::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let out = run();
    renewing.cancel();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
    assert!(stderr.contains("is busy"), "{stderr}");
    let mutating = || {
        c.handle()
            .request_log()
            .iter()
            .filter(|r| r.is_mutating() && !r.path.contains("leases"))
            .count()
    };
    assert_eq!(mutating(), 0, "the refused run touched nothing: {stderr}");

    // Nobody renews it any more: after its (short) duration under watch, it is taken over.
    std::thread::sleep(Duration::from_millis(500));
    c.rt.block_on(api.delete("firedrill-drill", &Default::default()))
        .unwrap();
    c.rt.block_on(api.create(&Default::default(), &lease(2)))
        .unwrap();
    let out = run();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stderr.contains("watching it"), "{stderr}");
}

/// A run killed with SIGKILL cannot write its record; what it wrote as it went remains.
#[test]
fn a_sigkilled_run_leaves_an_audit_trail_and_a_finished_one_only_its_record() {
    let d = Sticky::new("");
    let reports = d.dir.path().join("reports");
    let mut child = d.spawn_run();
    wait_for("the injection", Duration::from_secs(30), || {
        d.injected().exists()
    });
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    let _ = child.wait();
    let trails: Vec<(String, String)> = files_under(&reports)
        .into_iter()
        .filter(|(p, _)| p.ends_with(".partial.jsonl"))
        .collect();
    assert_eq!(trails.len(), 1, "{trails:?}");
    let (_, t) = &trails[0];
    assert!(
        t.lines().next().unwrap().contains("\"partial\":true"),
        "{t}"
    );
    assert!(
        t.contains("fault-injected") && t.contains("command touch"),
        "{t}"
    );

    // A run that ends writes its record and removes its trail.
    let r = d.cmd().args(["recover", "--all"]).output().unwrap();
    assert!(r.status.success(), "{:?}", text(&r));
    std::fs::remove_dir_all(&reports).unwrap();
    let child = d.spawn_run();
    wait_for("the injection", Duration::from_secs(30), || {
        d.injected().exists()
    });
    signal(child.id(), "TERM");
    let out = finish(child, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(3), "{:?}", text(&out));
    let left: Vec<String> = files_under(&reports).into_iter().map(|(p, _)| p).collect();
    assert!(left.iter().any(|p| p.ends_with(".json")), "{left:?}");
    assert!(
        !left.iter().any(|p| p.ends_with(".partial.jsonl")),
        "{left:?}"
    );
}
