//! What `status` prints: each step's state and latest attempt, as a table
//! (expansions of a template folded into one row unless asked for each)
//! and as its `--json` document.

use serde_json::json;

use crate::pipeline::Pipeline;
use crate::plan::{Plan, State, attempt_duration, describe_outcome};
use crate::state::dir::{Loaded, StateDir};
use crate::time::format_time;
use crate::view::history::{self, attempt_json};
use crate::view::progress::display_path;

/// `status --json`: version 1, the pid of a run in progress, and per step
/// its state, attempt count and latest attempt.
pub fn status_json(
    pipeline: &Pipeline,
    state: &StateDir,
    loaded: &Loaded,
    the_plan: &Plan,
) -> serde_json::Value {
    let steps: Vec<_> = the_plan
        .steps
        .iter()
        .map(|s| {
            let name = &pipeline.step(s.id).name;
            let h = loaded.history.step(name);
            json!({
                "name": name,
                "state": s.state,
                "attempts": h.map_or(0, |h| h.attempts_started),
                "last_attempt": h.and_then(|h| h.last.as_ref()).map(|a| attempt_json(state, name, a)),
            })
        })
        .collect();
    let doc =
        json!({ "version": 1, "running": loaded.writer.as_ref().map(|h| h.pid), "steps": steps });
    doc
}

/// `status` as a table: STEP, LAST RESULT, WHEN, TOOK, ATTEMPTS, (JOB,)
/// LOG.
pub fn status_text(
    pipeline: &Pipeline,
    state: &StateDir,
    loaded: &Loaded,
    the_plan: &Plan,
    expand: bool,
) -> String {
    let rows: Vec<[String; 6]> = the_plan
        .steps
        .iter()
        .map(|s| {
            let name = pipeline.step(s.id).name.clone();
            let h = loaded.history.step(&name);
            let attempts = h.map_or(0, |h| h.attempts_started);
            match h.and_then(|h| h.last.as_ref()) {
                None => [
                    name,
                    s.state.to_string(),
                    "-".into(),
                    "-".into(),
                    "0".into(),
                    "-".into(),
                ],
                Some(a) => {
                    let result = match &a.finished {
                        None if s.state == State::Running => "running".to_string(),
                        None => "interrupted".to_string(),
                        Some(f) if a.imported() => {
                            format!(
                                "imported ({})",
                                if f.outcome.ok() { "ok" } else { "failed" }
                            )
                        }
                        Some(f) if f.outcome.ok() && s.state == State::Stale => {
                            "ok (now stale)".to_string()
                        }
                        Some(f) if f.outcome.ok() => "ok".to_string(),
                        Some(f) => describe_outcome(&f.outcome),
                    };
                    let when = format_time(a.finished.as_ref().map_or(a.started_at, |f| f.at));
                    let took = attempt_duration(a).unwrap_or_else(|| "-".into());
                    let path = state.log(&name, a.number);
                    let log = if a.imported() {
                        "-".to_string()
                    } else if !path.exists() {
                        "(no output)".to_string()
                    } else {
                        display_path(&path).display().to_string()
                    };
                    [name, result, when, took, attempts.to_string(), log]
                }
            }
        })
        .collect();
    // Expansions of a template fold into one row, unless asked for each.
    let rows = if expand {
        rows
    } else {
        fold_templates(pipeline, the_plan, rows)
    };
    let header = ["STEP", "LAST RESULT", "WHEN", "TOOK", "ATTEMPTS", "LOG"].map(String::from);
    let (header, rows) = with_job_column(loaded, pipeline, the_plan, header, rows);
    let mut out = String::new();
    if let Some(holder) = &loaded.writer {
        out += &format!("{holder} is working on this pipeline\n");
    }
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    out += &history::table(&header, &rows, &[]);
    out
}

/// One `status` row per template: `align (6)`, its results counted, the
/// latest time, the attempts summed.
fn fold_templates(pipeline: &Pipeline, plan: &Plan, rows: Vec<[String; 6]>) -> Vec<[String; 6]> {
    let mut out: Vec<[String; 6]> = Vec::new();
    let mut folded: Vec<(String, usize)> = Vec::new();
    for (s, row) in plan.steps.iter().zip(rows) {
        let Some(template) = pipeline.step(s.id).template.clone() else {
            out.push(row);
            continue;
        };
        let at = match folded.iter().find(|(t, _)| *t == template) {
            Some(&(_, i)) => i,
            None => {
                folded.push((template.clone(), out.len()));
                out.push([
                    template,
                    String::new(),
                    "-".into(),
                    "-".into(),
                    "0".into(),
                    "-".into(),
                ]);
                out.len() - 1
            }
        };
        let group = &mut out[at];
        // Results as "5 ok, 1 exit code 3": counted in the result column.
        let mut counts: Vec<(String, usize)> = group[1]
            .split(", ")
            .filter(|p| !p.is_empty())
            .filter_map(|p| {
                p.split_once(' ')
                    .map(|(n, r)| (r.to_string(), n.parse().unwrap_or(0)))
            })
            .collect();
        match counts.iter_mut().find(|(r, _)| *r == row[1]) {
            Some((_, n)) => *n += 1,
            None => counts.push((row[1].clone(), 1)),
        }
        group[1] = counts
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect::<Vec<_>>()
            .join(", ");
        if row[2] != "-" && (group[2] == "-" || row[2] > group[2]) {
            group[2] = row[2].clone();
        }
        let attempts: u64 =
            group[4].parse::<u64>().unwrap_or(0) + row[4].parse::<u64>().unwrap_or(0);
        group[4] = attempts.to_string();
    }
    for (template, at) in folded {
        let n = pipeline.template(&template).map_or(0, <[_]>::len);
        out[at][0] = format!("{template} ({n} steps)");
    }
    out
}

/// The status table with a JOB column before LOG, when the latest attempt
/// of some step ran as a Slurm job and the rows are one per step, in plan
/// order; otherwise as it was, so other pipelines' tables do not change.
fn with_job_column(
    loaded: &Loaded,
    pipeline: &Pipeline,
    plan: &Plan,
    header: [String; 6],
    rows: Vec<[String; 6]>,
) -> (Vec<String>, Vec<Vec<String>>) {
    let jobs: Vec<Option<&String>> = plan
        .steps
        .iter()
        .map(|s| {
            loaded
                .history
                .step(&pipeline.step(s.id).name)
                .and_then(|h| h.last.as_ref())
                .and_then(|a| a.job.as_ref())
        })
        .collect();
    let mut header = header.to_vec();
    let mut rows: Vec<Vec<String>> = rows.into_iter().map(Vec::from).collect();
    if rows.len() == jobs.len() && jobs.iter().any(Option::is_some) {
        header.insert(5, "JOB".into());
        for (row, job) in rows.iter_mut().zip(&jobs) {
            row.insert(5, job.map_or("-".to_string(), |j| j.to_string()));
        }
    }
    (header, rows)
}
