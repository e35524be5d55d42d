//! The game-day live view on a terminal: the phase, the time since the fault, each probe's
//! recent state as a strip, the latest events, and keys for the facilitator —
//! `d` detected, `m` mitigated, `n` note, `h` halt (revert now).
//!
//! Marks go to the executor through `drill::Options::marks` and land on the timeline as
//! `EventKind::Mark`; halt cancels the run's token, so the drill reverts as on a signal.
//! Without a terminal (cron, CI) the caller keeps plain progress lines instead; both show
//! events in the words of [`event_text`].

use std::collections::{BTreeMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossterm::event::{self, Event as TermEvent, KeyCode, KeyEventKind, KeyModifiers};
use crossterm::terminal;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::timeline::{Clock, Event, EventKind, OperatorMark, Phase};

/// How many render ticks a probe strip shows.
const STRIP: usize = 60;
const TICK: Duration = Duration::from_millis(200);

/// Whether a live view can run here: stdin and stderr are terminals and this is not CI.
pub fn available() -> bool {
    std::io::stdin().is_terminal()
        && std::io::stderr().is_terminal()
        && std::env::var("CI").map_or(true, |v| v != "true")
}

#[derive(Default)]
struct State {
    title: String,
    clock: Option<Clock>,
    phase: Option<Phase>,
    trial: Option<u32>,
    t_inject: Option<Duration>,
    /// Current state of each probe, and its strip of past states (one per tick).
    probes: BTreeMap<String, (Option<bool>, VecDeque<Option<bool>>)>,
    /// Probes that failed at some point since the last tick: a blip shorter than a tick
    /// still shows in the strip.
    blips: Vec<String>,
    recent: VecDeque<String>,
    note: Option<String>,
    message: String,
}

/// Operators' marks, for `drill::Options::marks`.
pub type Marks = mpsc::UnboundedReceiver<OperatorMark>;

/// A running live view. Dropping it without [`Live::finish`] still restores the terminal.
pub struct Live {
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Live {
    /// Start the view: raw mode, a key reader and a renderer. Returns the observer to give the
    /// executor and the receiver of marks for `drill::Options::marks`.
    pub fn start(
        title: String,
        probes: &[String],
        cancel: CancellationToken,
    ) -> std::io::Result<(Live, crate::drill::Observer, Marks)> {
        terminal::enable_raw_mode()?;
        let state = Arc::new(Mutex::new(State {
            title,
            probes: probes
                .iter()
                .map(|p| (p.clone(), (None, VecDeque::new())))
                .collect(),
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::unbounded_channel();

        let keys = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || read_keys(&state, &stop, &tx, &cancel))
        };
        let render = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(mut s) = state.lock() {
                        let blips = std::mem::take(&mut s.blips);
                        for (name, (cur, strip)) in s.probes.iter_mut() {
                            let blip = blips.contains(name);
                            strip.push_back(if blip { Some(false) } else { *cur });
                            if strip.len() > STRIP {
                                strip.pop_front();
                            }
                        }
                        let _ = draw(&s);
                    }
                    std::thread::sleep(TICK);
                }
            })
        };
        let obs_state = state.clone();
        let observer: crate::drill::Observer = Box::new(move |clock: &Clock, e: &Event| {
            if let Ok(mut s) = obs_state.lock() {
                observe(&mut s, clock, e);
            }
        });
        Ok((
            Live {
                state,
                stop,
                threads: vec![keys, render],
            },
            observer,
            rx,
        ))
    }

    /// Stop the view and give the terminal back.
    pub fn finish(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = terminal::disable_raw_mode();
        if let Ok(s) = self.state.lock() {
            let _ = draw(&s);
        }
        // A closed terminal (SIGHUP) must not make this a panic after the reverts.
        crate::safety::redact::print_stderr("\n");
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.shutdown();
        }
    }
}

fn observe(s: &mut State, clock: &Clock, e: &Event) {
    s.clock = Some(*clock);
    if e.trial.is_some() && e.trial != s.trial {
        s.trial = e.trial;
        s.t_inject = None;
    }
    match &e.kind {
        EventKind::Phase { phase } => s.phase = Some(*phase),
        EventKind::FaultInjected { .. } if s.t_inject.is_none() => s.t_inject = Some(e.at),
        EventKind::ProbeChanged { probe, ok, .. } => {
            if let Some((cur, _)) = s.probes.get_mut(probe) {
                *cur = Some(*ok);
            }
            if !ok {
                s.blips.push(probe.clone());
            }
        }
        _ => {}
    }
    let line = event_text(e);
    s.recent
        .push_back(format!("[{:>8.3}s] {line}", e.at.as_secs_f64()));
    while s.recent.len() > 6 {
        s.recent.pop_front();
    }
}

fn read_keys(
    state: &Mutex<State>,
    stop: &AtomicBool,
    marks: &mpsc::UnboundedSender<OperatorMark>,
    cancel: &CancellationToken,
) {
    let say = |msg: String| {
        if let Ok(mut s) = state.lock() {
            s.message = msg;
        }
    };
    while !stop.load(Ordering::Relaxed) {
        if !event::poll(Duration::from_millis(100)).unwrap_or(false) {
            continue;
        }
        let Ok(TermEvent::Key(k)) = event::read() else {
            continue;
        };
        if k.kind != KeyEventKind::Press {
            continue;
        }
        let typing = state.lock().map(|s| s.note.is_some()).unwrap_or(false);
        if typing {
            let mut s = match state.lock() {
                Ok(s) => s,
                Err(_) => continue,
            };
            match k.code {
                KeyCode::Enter => {
                    let text = s.note.take().unwrap_or_default();
                    if !text.trim().is_empty() {
                        let _ = marks.send(OperatorMark::note(text.trim()));
                        s.message = "note recorded".into();
                    }
                }
                KeyCode::Esc => {
                    s.note = None;
                    s.message = "note discarded".into();
                }
                KeyCode::Backspace => {
                    if let Some(n) = s.note.as_mut() {
                        n.pop();
                    }
                }
                KeyCode::Char(c) => {
                    if let Some(n) = s.note.as_mut() {
                        n.push(c);
                    }
                }
                _ => {}
            }
            continue;
        }
        let ctrl_c = k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
        match k.code {
            _ if ctrl_c => {
                cancel.cancel();
                say("halting: reverting every injected fault".into());
            }
            KeyCode::Char('d') => {
                let _ = marks.send(OperatorMark::detected());
                say("marked: detected".into());
            }
            KeyCode::Char('m') => {
                let _ = marks.send(OperatorMark::mitigated());
                say("marked: mitigated".into());
            }
            KeyCode::Char('n') => {
                if let Ok(mut s) = state.lock() {
                    s.note = Some(String::new());
                }
            }
            KeyCode::Char('h') => {
                cancel.cancel();
                say("halting: reverting every injected fault".into());
            }
            _ => {}
        }
    }
}

fn strip(cells: &VecDeque<Option<bool>>) -> String {
    let mut o = String::new();
    for _ in cells.len()..STRIP {
        o.push(' ');
    }
    for c in cells {
        o.push_str(match c {
            Some(true) => "\x1b[32m█\x1b[0m",
            Some(false) => "\x1b[31m█\x1b[0m",
            None => "\x1b[90m·\x1b[0m",
        });
    }
    o
}

/// Draw the whole view (raw mode: lines end in \r\n).
fn draw(s: &State) -> std::io::Result<()> {
    let mut o = String::from("\x1b[H\x1b[2J");
    let now = s.clock.map(|c| c.now());
    let since = match (now, s.t_inject) {
        (Some(n), Some(t)) => format!("{:.1}s since the fault", n.saturating_sub(t).as_secs_f64()),
        _ => "no fault injected yet".into(),
    };
    o.push_str(&format!("\x1b[1m{}\x1b[0m\r\n", s.title));
    o.push_str(&format!(
        "trial {}  phase: \x1b[1m{}\x1b[0m  {since}\r\n\r\n",
        s.trial.map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
        s.phase
            .map(|p| p.to_string())
            .unwrap_or_else(|| "starting".into()),
    ));
    let width = s.probes.keys().map(|k| k.len()).max().unwrap_or(0);
    for (name, (cur, cells)) in &s.probes {
        let state = match cur {
            Some(true) => "\x1b[32mpassing\x1b[0m",
            Some(false) => "\x1b[31mFAILING\x1b[0m",
            None => "unknown",
        };
        o.push_str(&format!("  {name:<width$} {} {state}\r\n", strip(cells)));
    }
    o.push_str("\r\n");
    for l in &s.recent {
        o.push_str(&format!("  {l}\r\n"));
    }
    o.push_str("\r\n");
    match &s.note {
        Some(n) => o.push_str(&format!("note (Enter to save, Esc to drop): {n}_\r\n")),
        None => o.push_str(
            "keys: \x1b[1md\x1b[0m detected  \x1b[1mm\x1b[0m mitigated  \x1b[1mn\x1b[0m note  \x1b[1mh\x1b[0m halt (revert now)\r\n",
        ),
    }
    if !s.message.is_empty() {
        o.push_str(&format!("{}\r\n", s.message));
    }
    let mut err = std::io::stderr().lock();
    err.write_all(o.as_bytes())?;
    err.flush()
}

/// One event in a few words, for progress lines and the live view.
pub fn event_text(e: &Event) -> String {
    match &e.kind {
        EventKind::Phase { phase } => format!("{phase}"),
        EventKind::FaultTargets { fault, chosen } => format!("{fault}: {chosen}"),
        EventKind::StepStarted { fault, after } => format!("step {fault} starts: {after}"),
        EventKind::FaultInjected { fault, detail } => format!("injected {fault}: {detail}"),
        EventKind::FaultFailed { fault, error } => format!("could not inject {fault}: {error}"),
        EventKind::FaultReverted { fault, detail } => format!("reverted {fault}: {detail}"),
        EventKind::RevertFailed { fault, error } => format!("REVERT FAILED {fault}: {error}"),
        EventKind::ProbeChanged {
            probe, ok: true, ..
        } => format!("{probe} passing"),
        EventKind::ProbeChanged { probe, reason, .. } => {
            format!("{probe} failing: {}", reason.as_deref().unwrap_or("failed"))
        }
        EventKind::Recovery {
            object,
            step,
            detail,
        } => match detail {
            Some(d) => format!("{object}: {step} ({d})"),
            None => format!("{object}: {step}"),
        },
        EventKind::Recovered => "recovered".into(),
        EventKind::Aborted { reason } => reason.clone(),
        EventKind::Mark { mark, text } => format!("{mark}: {text}"),
    }
}
