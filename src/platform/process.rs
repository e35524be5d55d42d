//! Processes by pid, start time and boot: enough to tell the process a journal names from a
//! later one that reuses its pid.

use std::fs;

/// Whether a process with this pid exists (signal 0). A pid we may not signal exists.
pub fn pid_alive(pid: u32) -> bool {
    use nix::errno::Errno;
    use nix::sys::signal::kill;
    use nix::unistd::Pid;
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        return false;
    }
    match kill(Pid::from_raw(raw), None) {
        Ok(()) => true,
        Err(Errno::EPERM) => true,
        Err(_) => false,
    }
}

/// Whether a process exists and has not exited: a zombie (or a dead task) has done all it
/// will do, whoever is late to reap it.
pub fn running(pid: u32) -> bool {
    pid_alive(pid)
        && stat_fields(pid).is_some_and(|f| f.first().is_some_and(|s| s != "Z" && s != "X"))
}

/// When a process started: clock ticks after boot (field 22 of `/proc/PID/stat`). With the
/// boot id, a pid and its start time name one process; a bare pid may be reused by another
/// (or be pid 1 in a container).
pub fn process_start(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// `/proc/PID/stat` split after the command name (field 2, which may hold spaces and
/// parentheses): element 0 is the state (field 3), 2 the process group, 3 the session.
pub fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`): start times count from the boot.
pub fn boot_id() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Whether the process a journal or lock names is still the one running: same boot, the
/// pid alive, and the same start time. Without a recorded start time (older journals) only
/// the pid can be asked.
pub fn same_process(pid: u32, start: Option<u64>, boot: Option<&str>) -> bool {
    if let (Some(recorded), Some(now)) = (boot, boot_id()) {
        if recorded != now {
            return false;
        }
    }
    if !pid_alive(pid) {
        return false;
    }
    match start {
        Some(recorded) => process_start(pid) == Some(recorded),
        None => true,
    }
}
