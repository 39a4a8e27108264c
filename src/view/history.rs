//! What the inspecting commands `history` and `status --run` print, as text
//! and as JSON documents with a `"version"`.

use serde_json::{Value, json};

use crate::pipeline::Pipeline;
use crate::plan::describe_outcome;
use crate::state::dir::StateDir;
use crate::state::history::Attempt;
use crate::state::runs::{Run, RunResult, Runs};
use crate::time::{format_duration_ms, format_time};
use crate::view::events::exit_code_and_signal;
use crate::view::progress::display_path;

/// The version of the `history --json` and `status --run --json` schemas.
pub const VIEWS_VERSION: u32 = 1;

/// One attempt as `status --json` gives it.
pub fn attempt_json(state: &StateDir, name: &str, a: &Attempt) -> Value {
    let (exit_code, signal) = a
        .finished
        .as_ref()
        .map_or((None, None), |f| exit_code_and_signal(&f.outcome));
    let mut doc = json!({
        "number": a.number,
        "run": a.run,
        "imported": a.imported(),
        "ok": a.ok(),
        "finished": a.finished.is_some(),
        "outcome": a.finished.as_ref().map(|f| describe_outcome(&f.outcome)),
        "exit_code": exit_code,
        "signal": signal,
        "started_at": a.started_at,
        "finished_at": a.finished.as_ref().map(|f| f.at),
        "duration_ms": a.finished.as_ref().map(|f| f.duration_ms),
        "log": Some(state.log(name, a.number)).filter(|p| !a.imported() && p.exists()),
    });
    // Only for attempts that ran as Slurm jobs, so other documents are as
    // they were.
    if let (Some(job), Some(map)) = (&a.job, doc.as_object_mut()) {
        map.insert("job".into(), json!(job));
    }
    doc
}

/// What the views say of a run's steps and time, which for a run still
/// going on differs from what its records say: a step running now has not
/// failed (the counts hold it as failed until it succeeds), and the run has
/// lasted until now, not until its last record.
struct Shown<'a> {
    duration_ms: u64,
    failed: Vec<&'a str>,
    failed_count: usize,
    running: Vec<&'a str>,
}

impl<'a> Shown<'a> {
    fn of(run: &'a Run, live: Option<u64>) -> Shown<'a> {
        if run.result(live) != RunResult::Running {
            return Shown {
                duration_ms: run.duration_ms(),
                failed: run.failed_steps(),
                failed_count: run.failed_step_count(),
                running: Vec::new(),
            };
        }
        let running = run.unfinished_steps();
        let failed: Vec<&str> = run
            .failed_steps()
            .into_iter()
            .filter(|s| !running.contains(s))
            .collect();
        Shown {
            duration_ms: crate::journal::now().saturating_sub(run.started_at),
            failed_count: run.failed_step_count().saturating_sub(running.len()),
            failed,
            running,
        }
    }
}

/// One run as `history --json` gives it.
pub fn run_json(run: &Run, live: Option<u64>) -> Value {
    let shown = Shown::of(run, live);
    json!({
        "id": run.id,
        "pid": run.pid,
        "started_at": run.started_at,
        "finished_at": run.ended_at.filter(|_| run.exit_code.is_some()),
        "duration_ms": shown.duration_ms,
        "result": run.result(live).as_str(),
        "exit_code": run.exit_code,
        "steps_run": run.step_count(),
        "steps_failed": shown.failed_count,
        "attempts": run.attempt_count(),
        "failed": shown.failed,
        "running": shown.running,
    })
}

/// `history --json`: the last `limit` runs (all with 0), newest first.
pub fn history_json(runs: &Runs, live: Option<u64>, limit: usize) -> Value {
    let shown: Vec<Value> = runs
        .newest(if limit == 0 { usize::MAX } else { limit })
        .map(|r| run_json(r, live))
        .collect();
    json!({ "version": VIEWS_VERSION, "total": runs.runs.len(), "runs": shown })
}

/// Lines of a table: columns padded to their widest cell, the last one
/// left as it is; columns in `right` aligned to the right. Widths are
/// counted in columns on screen, so a CJK name keeps the table aligned.
pub fn table(header: &[&str], rows: &[Vec<String>], right: &[usize]) -> String {
    use unicode_width::UnicodeWidthStr;
    let mut widths: Vec<usize> = header.iter().map(|h| h.width()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.width());
        }
    }
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, &w)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
                continue;
            }
            let pad = " ".repeat(w.saturating_sub(cell.width()));
            if right.contains(&i) {
                line.push_str(&pad);
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&pad);
            }
            line.push_str("  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `history`: one line per run, newest first.
pub fn history_text(runs: &Runs, live: Option<u64>, limit: usize) -> String {
    if runs.runs.is_empty() {
        return "no run recorded yet: `stepwise run` runs the pipeline\n".into();
    }
    let take = if limit == 0 { usize::MAX } else { limit };
    let rows: Vec<Vec<String>> = runs
        .newest(take)
        .map(|r| {
            let shown = Shown::of(r, live);
            let mut failed: Vec<String> = shown.failed.iter().map(|s| s.to_string()).collect();
            // Steps whose records compaction dropped are counted, not named.
            let unnamed = shown.failed_count.saturating_sub(failed.len());
            if unnamed > 0 {
                failed.push(format!("+{unnamed} more"));
            }
            vec![
                r.id.to_string(),
                format_time(r.started_at),
                format_duration_ms(shown.duration_ms),
                r.result(live).to_string(),
                r.step_count().to_string(),
                shown.failed_count.to_string(),
                r.attempt_count().to_string(),
                failed.join(", "),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "RUN",
            "STARTED",
            "TOOK",
            "RESULT",
            "STEPS",
            "FAILED",
            "ATTEMPTS",
            "FAILED STEPS",
        ],
        &rows,
        &[0, 4, 5, 6],
    );
    let hidden = runs.runs.len().saturating_sub(take);
    if hidden > 0 {
        out += &format!(
            "({hidden} older run{} not shown; -n 0 shows all)\n",
            if hidden == 1 { "" } else { "s" }
        );
    }
    out
}

/// The steps of a run in pipeline order, then any it ran that the pipeline
/// no longer has, in the order they ran.
fn run_steps<'a>(pipeline: &'a Pipeline, run: &'a Run) -> Vec<&'a str> {
    let ran = run.steps();
    let mut out: Vec<&str> = pipeline.names().filter(|n| ran.contains(n)).collect();
    for name in ran {
        if pipeline.find(name).is_none() {
            out.push(name);
        }
    }
    out
}

/// `status --run ID --json`.
pub fn run_status_json(
    pipeline: &Pipeline,
    state: &StateDir,
    run: &Run,
    live: Option<u64>,
) -> Value {
    let steps: Vec<Value> = run_steps(pipeline, run)
        .into_iter()
        .map(|name| {
            let attempts: Vec<&Attempt> = run.attempts_of(name).collect();
            json!({
                "name": name,
                "attempts": attempts.len(),
                "last_attempt": attempts.last().map(|a| attempt_json(state, name, a)),
            })
        })
        .collect();
    json!({ "version": VIEWS_VERSION, "run": run_json(run, live), "steps": steps })
}

/// `status --run ID`: the run, then a line per step it ran.
pub fn run_status_text(
    pipeline: &Pipeline,
    state: &StateDir,
    run: &Run,
    live: Option<u64>,
) -> String {
    let result = run.result(live);
    let shown = Shown::of(run, live);
    let mut out = format!(
        "run {}: started {}, {} {}, {}",
        run.id,
        format_time(run.started_at),
        if result == RunResult::Running {
            "running for"
        } else {
            "took"
        },
        format_duration_ms(shown.duration_ms),
        result
    );
    if let Some(code) = run.exit_code {
        out += &format!(" (exit code {code})");
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = run_steps(pipeline, run)
        .into_iter()
        .map(|name| {
            let attempts: Vec<&Attempt> = run.attempts_of(name).collect();
            let last = attempts.last().expect("a step of the run has an attempt");
            let result = match &last.finished {
                None if shown.running.contains(&name) => "running".to_string(),
                None => "never finished".to_string(),
                Some(f) if f.outcome.ok() => "ok".to_string(),
                Some(f) => describe_outcome(&f.outcome),
            };
            let numbers: Vec<String> = attempts.iter().map(|a| format!("#{}", a.number)).collect();
            let path = state.log(name, last.number);
            let log = if path.exists() {
                display_path(&path).display().to_string()
            } else {
                "(no output)".to_string()
            };
            vec![
                name.to_string(),
                result,
                format_time(last.started_at),
                last.finished
                    .as_ref()
                    .map_or("-".to_string(), |f| format_duration_ms(f.duration_ms)),
                numbers.join(" "),
                log,
            ]
        })
        .collect();
    let dropped = run.step_count().saturating_sub(rows.len());
    if rows.is_empty() && dropped == 0 {
        out += "no step ran in this run\n";
        return out;
    }
    if !rows.is_empty() {
        out += &table(
            &["STEP", "LAST RESULT", "STARTED", "TOOK", "ATTEMPTS", "LOG"],
            &rows,
            &[],
        );
    }
    if dropped > 0 {
        let which = match (rows.is_empty(), dropped) {
            (true, 1) => "the step it ran is".to_string(),
            (true, n) => format!("the {n} steps it ran are"),
            (false, 1) => "1 more step it ran is".to_string(),
            (false, n) => format!("{n} more steps it ran are"),
        };
        out += &format!(
            "{which} no longer in the journal: compaction (`stepwise gc`) keeps only each step's latest attempts\n"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_with_wide_characters_stays_aligned() {
        let rows = vec![
            vec!["写真".to_string(), "1".to_string(), "x".to_string()],
            vec!["ab".to_string(), "22".to_string(), "y".to_string()],
        ];
        let text = table(&["NAME", "N", "LOG"], &rows, &[1]);
        assert_eq!(text, "NAME   N  LOG\n写真   1  x\nab    22  y\n");
    }

    #[test]
    fn tables_pad_every_column_but_the_last() {
        let t = table(
            &["A", "NUMBER", "NOTE"],
            &[
                vec!["x".into(), "7".into(), "".into()],
                vec!["long".into(), "12".into(), "hi".into()],
            ],
            &[1],
        );
        assert_eq!(t, "A     NUMBER  NOTE\nx          7\nlong      12  hi\n");
    }
}
