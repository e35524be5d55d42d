//! A fault's `wait:`: the fault becomes a step that starts once an earlier fault was injected
//! (`after:`, default the fault before it) or removed (`removed:`, a fault held for a
//! duration), `for:` a delay later and `until:` a probe fails or passes, bounded by `within:`.

use super::*;
use crate::experiment::model::step::{ProbeCondition, StepWait};

impl Builder<'_, '_> {
    /// The `wait:` of every fault, in `faults` order. Read after the faults and probes, since
    /// a step names both.
    pub(super) fn steps(
        &mut self,
        root: &Node,
        faults: &[FaultSpec],
        names: &[Option<String>],
        probes: &[String],
        timeout: Duration,
    ) -> Vec<Option<StepWait>> {
        let mut out = vec![None; faults.len()];
        let Some(Kind::Seq(items)) = root.get("faults").map(|n| &n.kind) else {
            return out;
        };
        // A fault that did not load has its own error; the steps are still checked.
        let aligned = items.len() == faults.len();
        let item_names: Vec<Option<String>> = items
            .iter()
            .map(|item| {
                item.get("name")
                    .filter(|n| n.is_scalar())
                    .map(|n| n.raw.clone())
            })
            .collect();
        for (i, item) in items.iter().enumerate() {
            let Some(w) = item.get("wait") else {
                continue;
            };
            let path = format!("faults[{i}].wait");
            let raw = if w.is_scalar() {
                match self.cx.de::<Dur>(w, &path) {
                    Some(d) => RawWait {
                        after: None,
                        removed: None,
                        delay: Some(d),
                        until: None,
                        within: None,
                    },
                    None => continue,
                }
            } else if w.entries().is_none() {
                self.cx.error(
                    w.span,
                    &path,
                    format!("expected a duration or a mapping, found {}", w.describe()),
                    Some("write `wait: 30s`, or `wait: { after: <fault name>, for: 30s, until: { probe: <name>, is: failing } }`".into()),
                );
                continue;
            } else {
                match self.cx.de::<RawWait>(w, &path) {
                    Some(raw) => raw,
                    None => continue,
                }
            };
            let step = self.step(w, &path, i, raw, &item_names, faults, probes, timeout);
            if let (Some(step), true) = (step, aligned) {
                out[i] = Some(step);
            }
        }
        if aligned {
            debug_assert_eq!(names.len(), out.len());
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        w: &Node,
        path: &str,
        i: usize,
        raw: RawWait,
        names: &[Option<String>],
        faults: &[FaultSpec],
        probes: &[String],
        timeout: Duration,
    ) -> Option<StepWait> {
        let (named, from_removal, key) = match (&raw.after, &raw.removed) {
            (Some(_), Some(_)) => {
                self.cx.error(
                    at(w, "removed"),
                    &child_path(path, "removed"),
                    "`after` and `removed` cannot both be set",
                    Some("`after: <fault>` counts from that fault's injection, `removed: <fault>` from its removal: keep one".into()),
                );
                return None;
            }
            (Some(a), None) => (Some(a.as_str()), false, "after"),
            (None, Some(r)) => (Some(r.as_str()), true, "removed"),
            (None, None) => (None, false, "after"),
        };
        let kpath = child_path(path, key);
        let span = if named.is_some() { at(w, key) } else { w.span };
        let from = match named {
            None if i == 0 => {
                self.cx.error(
                    w.span,
                    path,
                    "the first fault has no earlier fault to wait on",
                    Some("a trial starts with its first fault once the steady state holds: drop `wait` here, or move this fault after the one it should wait on".into()),
                );
                return None;
            }
            None => i - 1,
            Some(name) => {
                let known: Vec<&str> = names.iter().flatten().map(String::as_str).collect();
                match names.iter().position(|n| n.as_deref() == Some(name)) {
                    None => {
                        let help = if known.is_empty() {
                            Some(format!(
                                "no fault has a name yet: add `name: {name}` to the fault this step waits on"
                            ))
                        } else {
                            suggest(name, known.iter().copied())
                                .or_else(|| Some(format!("fault names: {}", known.join(", "))))
                        };
                        self.cx
                            .error(span, &kpath, format!("unknown fault `{name}`"), help);
                        return None;
                    }
                    Some(j) if j >= i => {
                        let which = if j == i { "itself" } else { "a later fault" };
                        self.cx.error(
                            span,
                            &kpath,
                            format!("a step waits only on an earlier fault, and `{name}` is {which}"),
                            Some(format!(
                                "faults run in the order of the list: put `{name}` before the fault that waits on it"
                            )),
                        );
                        return None;
                    }
                    Some(j) => j,
                }
            }
        };
        if from_removal && faults.get(from).is_some_and(|f| f.duration().is_none()) {
            let name = named.unwrap_or_default();
            self.cx.error(
                span,
                &kpath,
                format!(
                    "`{name}` acts once ({}) and is never removed, so this step would never start",
                    faults[from].kind()
                ),
                Some(format!(
                    "wait `after: {name}` with `for:` or `until:` instead; `removed:` names a fault held for a `duration`"
                )),
            );
            return None;
        }
        let has_until = raw.until.is_some();
        let until = raw.until.and_then(|u| {
            let upath = child_path(&child_path(path, "until"), "probe");
            if probes.contains(&u.probe) {
                Some(ProbeCondition {
                    probe: u.probe,
                    passing: matches!(u.is, RawProbeState::Passing),
                })
            } else {
                let span = w.get("until").map_or(w.span, |n| at(n, "probe"));
                self.cx.error(
                    span,
                    &upath,
                    format!("unknown probe `{}`", u.probe),
                    suggest(&u.probe, probes.iter().map(String::as_str))
                        .or_else(|| Some(format!("probes: {}", probes.join(", ")))),
                );
                None
            }
        });
        if raw.delay.is_none() && !has_until && !from_removal {
            self.cx.error(
                w.span,
                path,
                "this step waits for nothing",
                Some("add `for: 30s`, `until: { probe: <name>, is: failing }` or `removed: <held fault>`; without `wait` a fault is injected right after the one before it".into()),
            );
            return None;
        }
        let delay = self.opt_duration(
            w,
            path,
            "for",
            raw.delay,
            Limit::new(Duration::ZERO, Duration::ZERO, DAY),
        );
        let within = self.opt_duration(
            w,
            path,
            "within",
            raw.within,
            Limit::new(delay + timeout, MS, 7 * DAY),
        );
        if raw.within.is_some() && within <= delay {
            self.cx.error(
                at(w, "within"),
                &child_path(path, "within"),
                format!(
                    "`within` ({}) must be longer than `for` ({})",
                    humantime::format_duration(within),
                    humantime::format_duration(delay)
                ),
                Some(
                    "`within` bounds the whole wait, counted from the same instant as `for`".into(),
                ),
            );
            return None;
        }
        Some(StepWait {
            from,
            from_removal,
            delay,
            until,
            within,
        })
    }
}
