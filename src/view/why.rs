//! What `why STEP` prints: the verdict on one step and every reason for
//! it, as text and as its `--json` document.

use serde_json::json;

use crate::pipeline::Pipeline;
use crate::plan::{Action, State};
use crate::project::Why;
use crate::time::format_time;

/// `why --json`: version 1, the step's action, state and reason, the
/// attempt it was compared with, each change with its digests before and
/// after, and what is unchanged.
pub fn why_json(pipeline: &Pipeline, why: &Why) -> serde_json::Value {
    let name = &pipeline.step(why.id).name;
    let changes: Vec<_> = why
        .changes
        .iter()
        .map(|c| {
            let mut v = serde_json::to_value(&c.reason).unwrap_or_default();
            if let Some(obj) = v.as_object_mut() {
                obj.insert("was".into(), json!(c.was.map(|d| d.to_string())));
                obj.insert("now".into(), json!(c.now.map(|d| d.to_string())));
            }
            v
        })
        .collect();
    let doc = json!({
        "version": 1,
        "name": name,
        "action": why.plan.action,
        "state": why.plan.state,
        "reason": why.plan.reason,
        "compared_with": why.compared_with.as_ref().map(|a| json!({
            "attempt": a.number,
            "run": a.run,
            "imported": a.imported(),
            "finished_at": a.finished.as_ref().map(|f| f.at),
            "fingerprint": a.stamp.as_ref().map(|s| s.fingerprint.to_string()),
        })),
        "reasons": changes,
        "unchanged": why.unchanged,
        "warnings": why.plan.warnings,
    });
    doc
}

/// `why` as text: the verdict, what it was compared with and what
/// changed, and the inputs that are missing.
pub fn why_text(pipeline: &Pipeline, why: &Why) -> String {
    let name = &pipeline.step(why.id).name;
    let verdict = match why.plan.action {
        Action::Run => "will run",
        Action::Skip => "will be skipped",
    };
    let mut out = format!("{name}: {verdict} ({})\n", why.plan.state);
    let compared = why.compared_with.as_ref().filter(|a| a.stamp.is_some());
    match (why.plan.state, compared) {
        (State::Done | State::Imported, Some(a)) => {
            out += &format!("  {}\n", why.plan.reason);
            out += &format!(
                "  attempt {} was made with the step exactly as it is now: {}\n",
                a.number,
                summarize_components(&why.unchanged)
            );
            let outputs = &pipeline.step(why.id).outputs;
            if !outputs.is_empty() {
                out += &format!("  its outputs are present: {}\n", outputs.join(", "));
            }
        }
        (State::Done | State::Imported, None) => {
            out += &format!("  {}\n", why.plan.reason);
            out += "  it is done by name: it has no fingerprint to compare (imported while an input was missing, or planned --by-name)\n";
        }
        (State::Stale, Some(a)) => {
            let when = a.finished.as_ref().map_or(a.started_at, |f| f.at);
            let which = if a.imported() {
                "the imported success".to_string()
            } else {
                format!("attempt {}", a.number)
            };
            out += &format!(
                "  compared with {which}, which succeeded on {}:\n",
                format_time(when)
            );
            for c in &why.changes {
                out += &format!("  - {}", c.reason);
                match (c.was, c.now) {
                    (Some(was), Some(now)) => {
                        out += &format!(" (was {}, now {})", was.short(), now.short())
                    }
                    (Some(was), None) => out += &format!(" (was {})", was.short()),
                    (None, Some(now)) => out += &format!(" (now {})", now.short()),
                    (None, None) => {}
                }
                if let crate::fingerprint::Reason::DependencyWillRun { step } = &c.reason
                    && let Some(dep) = pipeline.find(step).and_then(|d| why.full_plan.step(d))
                {
                    out += &format!(" ({}: {})", dep.state, dep.reason);
                }
                out += "\n";
            }
            if !why.unchanged.is_empty() {
                out += &format!("  unchanged: {}\n", summarize_components(&why.unchanged));
            }
        }
        _ => out += &format!("  {}\n", why.plan.reason),
    }
    for m in &why.missing_inputs {
        out += &format!("  warning: input `{}` {}\n", m.pattern, m.why);
    }
    out
}

/// "command, shell, dir, 2 env vars, 3 inputs, 1 dependency".
fn summarize_components(keys: &[String]) -> String {
    let count = |prefix: &str| keys.iter().filter(|k| k.starts_with(prefix)).count();
    let mut parts: Vec<String> = Vec::new();
    for (key, word) in [("run", "command"), ("shell", "shell"), ("dir", "dir")] {
        if keys.iter().any(|k| k == key) {
            parts.push(word.into());
        }
    }
    for (prefix, one, many) in [
        ("env:", "env var", "env vars"),
        ("input:", "input", "inputs"),
        ("dep:", "dependency", "dependencies"),
    ] {
        match count(prefix) {
            0 => {}
            1 => parts.push(format!("1 {one}")),
            n => parts.push(format!("{n} {many}")),
        }
    }
    parts.join(", ")
}
