//! `stepwise report`: one self-contained HTML file (inline CSS, JavaScript
//! and SVG; nothing fetched from the network) showing the pipeline as it
//! stands and as it ran:
//!
//! - the dependency graph, each step coloured by its plan state;
//! - a timeline (Gantt chart) of every attempt of the last runs, retries
//!   and failures visible, drawn by the page's script from the data the
//!   file embeds (`<script type="application/json" id="report-data">`);
//! - a table of the steps: state, attempts, durations, exit codes and the
//!   reasons `why` gives;
//! - the last lines of each failed attempt's log.
//!
//! Elements carry `data-step`, `data-state`, `data-attempt` and
//! `data-outcome` attributes, so tests (and scripts) can read the page.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::error::Result;
use crate::journal::{Millis, Outcome, now};
use crate::plan::{Mode, describe_outcome};
use crate::project::Project;
use crate::state::history::Attempt;
use crate::state::runs::{Run, Runs};
use crate::time::{format_duration_ms, format_time};
use crate::view::graph::{self, Kind, escape_html};
use crate::view::progress::{display_path, tail};

/// What the report shows.
#[derive(Clone, Debug)]
pub struct ReportOptions {
    /// How many of the latest runs the timeline and the logs cover.
    pub runs: usize,
    /// Lines of each failed attempt's log to include.
    pub tail_lines: usize,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            runs: 5,
            tail_lines: 20,
        }
    }
}

/// The report of a project, as one HTML document.
pub fn render(project: &Project, options: &ReportOptions) -> Result<(String, Vec<String>)> {
    let inspection = project.inspect(&[], Mode::Fingerprint)?;
    let mut records = Vec::new();
    project.state.read(&mut |r| records.push(r))?;
    let runs = Runs::from_records(records);
    let live = inspection.loaded.live_run;
    let pipeline = &project.pipeline;
    let plan = &inspection.plan;
    let shown: Vec<&Run> = runs.newest(options.runs).collect();

    let mut html = String::with_capacity(64 * 1024);
    let title = format!("stepwise report: {}", pipeline.path.display());
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<meta name=\"generator\" content=\"stepwise {}\">\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body data-rendered=\"no\">\n",
        env!("CARGO_PKG_VERSION"),
        escape_html(&title)
    );

    // Header: where, when, and the plan at a glance.
    let _ = write!(
        html,
        "<header>\n<h1>stepwise report</h1>\n<p class=\"meta\"><code>{}</code> &middot; generated {} &middot; {} step{} &middot; {} run{} recorded</p>\n<p class=\"plan\" id=\"plan\" data-done=\"{}\" data-remaining=\"{}\">{}</p>\n<ul class=\"counts\">",
        escape_html(&display_path(&pipeline.path).display().to_string()),
        format_time(now()),
        plan.steps.len(),
        plural(plan.steps.len()),
        runs.runs.len(),
        plural(runs.runs.len()),
        plan.done(),
        plan.remaining(),
        escape_html(&plan.to_string())
    );
    for kind in Kind::ALL {
        let n = plan.steps.iter().filter(|s| Kind::of(s) == kind).count();
        if n > 0 {
            let (fill, border) = kind.colors();
            let _ = write!(
                html,
                "<li><button type=\"button\" class=\"chip\" data-filter=\"{}\" style=\"background:{fill};border-color:{border}\">{n} {}</button></li>",
                kind.class(),
                kind.label()
            );
        }
    }
    html.push_str("</ul>\n</header>\n<main>\n");

    // The graph.
    html.push_str("<section id=\"graph\">\n<h2>Graph</h2>\n<p class=\"hint\">Arrows point from a step to the steps that need it. Click a step for its row below.</p>\n<div class=\"scroll\">");
    html.push_str(&graph::svg(pipeline, plan));
    html.push_str("</div>\n<ul class=\"legend\">");
    for kind in Kind::ALL {
        let (fill, border) = kind.colors();
        let _ = write!(
            html,
            "<li><span class=\"swatch\" style=\"background:{fill};border-color:{border}\"></span>{}</li>",
            kind.label()
        );
    }
    html.push_str("</ul>\n</section>\n");

    // The timeline, drawn by the script from the embedded data.
    let _ = write!(
        html,
        "<section id=\"timeline\">\n<h2>Timeline</h2>\n<p class=\"hint\">Every attempt of the last {} run{}, newest first. Hover over a bar for details.</p>\n<ul class=\"legend\"><li><span class=\"swatch bar-ok\"></span>succeeded</li><li><span class=\"swatch bar-failed\"></span>failed</li><li><span class=\"swatch bar-interrupted\"></span>interrupted</li><li><span class=\"swatch bar-unfinished\"></span>never finished</li></ul>\n<div id=\"gantt\">{}</div>\n<noscript><p>The timeline needs JavaScript.</p></noscript>\n</section>\n",
        shown.len(),
        plural(shown.len()),
        if shown.is_empty() {
            "<p class=\"empty\">No run recorded yet: <code>stepwise run</code> runs the pipeline.</p>"
        } else {
            ""
        }
    );

    // The table of steps.
    html.push_str("<section id=\"steps\">\n<h2>Steps</h2>\n<table id=\"steps-table\">\n<thead><tr><th>Step</th><th>State</th><th>Next run</th><th>Attempts</th><th>Last attempt</th><th>Recent attempts</th><th>Why</th></tr></thead>\n<tbody>\n");
    for s in &plan.steps {
        let name = &pipeline.step(s.id).name;
        let h = inspection.loaded.history.step(name);
        let kind = Kind::of(s);
        let (fill, border) = kind.colors();
        let last = h.and_then(|h| h.last.as_ref());
        let last_cell = match last {
            None => "&ndash;".to_string(),
            Some(a) => attempt_cell(a),
        };
        let mut recent = String::new();
        for run in shown.iter().rev() {
            for a in run.attempts_of(name) {
                let _ = write!(
                    recent,
                    "<span class=\"attempt {}\" data-attempt=\"{}\" title=\"run {}: {}\">#{} {}</span> ",
                    bar_class(a),
                    a.number,
                    run.id,
                    escape_html(&outcome_text(a)),
                    a.number,
                    a.finished
                        .as_ref()
                        .map_or("?".to_string(), |f| format_duration_ms(f.duration_ms))
                );
            }
        }
        let explained = project.explain(&inspection, s);
        let listed = s.state == crate::plan::State::Stale && !explained.changes.is_empty();
        let mut why = if listed {
            String::new()
        } else {
            format!("<p>{}</p>", escape_html(&s.reason))
        };
        if listed {
            why.push_str("<ul class=\"changes\">");
            for c in &explained.changes {
                let mut item = escape_html(&c.reason.to_string());
                match (c.was, c.now) {
                    (Some(was), Some(now)) => {
                        let _ = write!(
                            item,
                            " <span class=\"digest\">(was {}, now {})</span>",
                            was.short(),
                            now.short()
                        );
                    }
                    (Some(was), None) => {
                        let _ =
                            write!(item, " <span class=\"digest\">(was {})</span>", was.short());
                    }
                    (None, Some(now)) => {
                        let _ =
                            write!(item, " <span class=\"digest\">(now {})</span>", now.short());
                    }
                    (None, None) => {}
                }
                let _ = write!(why, "<li>{item}</li>");
            }
            why.push_str("</ul>");
        }
        for m in &explained.missing_inputs {
            let _ = write!(
                why,
                "<p class=\"warning\">warning: input <code>{}</code> {}</p>",
                escape_html(&m.pattern),
                escape_html(&m.why)
            );
        }
        let _ = writeln!(
            html,
            "<tr id=\"step-{n}\" data-step=\"{n}\" data-state=\"{state}\" data-kind=\"{class}\"><th scope=\"row\"><code>{n}</code></th><td><span class=\"state\" style=\"background:{fill};border-color:{border}\">{state}</span></td><td>{action}</td><td class=\"num\">{attempts}</td><td>{last_cell}</td><td class=\"recent\">{recent}</td><td class=\"why\">{why}</td></tr>",
            n = escape_html(name),
            state = s.state,
            class = kind.class(),
            action = match s.action {
                crate::plan::Action::Run => "run",
                crate::plan::Action::Skip => "skip",
            },
            attempts = h.map_or(0, |h| h.attempts_started),
        );
    }
    html.push_str("</tbody>\n</table>\n</section>\n");

    // Failed attempts and their logs.
    html.push_str("<section id=\"logs\">\n<h2>Failed attempts</h2>\n");
    let mut failures = 0;
    for run in &shown {
        for (name, a) in run.attempts.iter().rev() {
            if a.ok()
                || (a.finished.is_none()
                    && run.result(live) == crate::state::runs::RunResult::Running)
            {
                continue;
            }
            failures += 1;
            let path = project.state.log(name, a.number);
            let lines = tail(&path, options.tail_lines);
            let _ = writeln!(
                html,
                "<details class=\"log\" data-step=\"{n}\" data-attempt=\"{}\" data-run=\"{}\"{}><summary><code>{n}</code> attempt {} (run {}): {}{}</summary>",
                a.number,
                run.id,
                if failures <= 5 { " open" } else { "" },
                a.number,
                run.id,
                escape_html(&outcome_text(a)),
                job_note(a),
                n = escape_html(name),
            );
            if lines.is_empty() {
                html.push_str("<p class=\"empty\">It printed nothing.</p>");
            } else {
                let _ = write!(
                    html,
                    "<p class=\"hint\">Last {} line{} of <code>{}</code>:</p><pre>",
                    lines.len(),
                    plural(lines.len()),
                    escape_html(&display_path(&path).display().to_string())
                );
                for line in &lines {
                    html.push_str(&escape_html(line));
                    html.push('\n');
                }
                html.push_str("</pre>");
            }
            html.push_str("</details>\n");
        }
    }
    if failures == 0 {
        html.push_str("<p class=\"empty\">No failed attempt in these runs.</p>\n");
    }
    html.push_str("</section>\n</main>\n");

    // The data for the timeline, then the script.
    let data = timeline_data(&shown, live);
    // No `<` at all inside the script element: `</script>` would end it,
    // and `<!--<script>` (in a step name) would make the parser run past
    // its end. In JSON `<` only occurs inside strings, where `\u003c` means
    // the same.
    let data = serde_json::to_string(&data)
        .unwrap_or_else(|_| "{}".into())
        .replace('<', "\\u003c");
    let _ = write!(
        html,
        "<script type=\"application/json\" id=\"report-data\">{data}</script>\n<script>{JS}</script>\n</body>\n</html>\n"
    );
    Ok((html, inspection.loaded.warnings))
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The CSS class of an attempt's bar: `ok`, `failed`, `interrupted` or
/// `unfinished`.
fn bar_class(a: &Attempt) -> &'static str {
    match a.finished.as_ref().map(|f| &f.outcome) {
        None => "unfinished",
        Some(Outcome::Success) => "ok",
        Some(Outcome::Interrupted(_)) => "interrupted",
        Some(_) => "failed",
    }
}

fn outcome_text(a: &Attempt) -> String {
    match &a.finished {
        None => "never finished".into(),
        Some(f) => format!(
            "{}, {}",
            describe_outcome(&f.outcome),
            format_duration_ms(f.duration_ms)
        ),
    }
}

fn attempt_cell(a: &Attempt) -> String {
    let (code, _) = a.finished.as_ref().map_or((None, None), |f| {
        crate::view::events::exit_code_and_signal(&f.outcome)
    });
    let which = if a.imported() {
        "imported".to_string()
    } else {
        format!("#{}", a.number)
    };
    let code = code.map_or(String::new(), |c| {
        format!(" <span class=\"exit\" data-exit-code=\"{c}\">exit {c}</span>")
    });
    format!(
        "<span class=\"attempt {}\">{which}</span> {}{code}{}",
        bar_class(a),
        escape_html(&outcome_text(a)),
        job_note(a)
    )
}

/// ` (Slurm job N)` for an attempt that ran as one, else nothing.
fn job_note(a: &Attempt) -> String {
    a.job.as_ref().map_or(String::new(), |job| {
        let job = escape_html(job);
        format!(" <span class=\"job\" data-job=\"{job}\">(Slurm job {job})</span>")
    })
}

/// The runs as the timeline script reads them.
fn timeline_data(runs: &[&Run], live: Option<u64>) -> Value {
    let runs: Vec<Value> = runs
        .iter()
        .map(|run| {
            let end_of = |a: &Attempt| -> Millis {
                match &a.finished {
                    Some(f) => a.started_at.max(f.at),
                    None => run.last_at.max(a.started_at),
                }
            };
            let attempts: Vec<Value> = run
                .attempts
                .iter()
                .map(|(name, a)| {
                    let (exit_code, signal) = a
                        .finished
                        .as_ref()
                        .map_or((None, None), |f| crate::view::events::exit_code_and_signal(&f.outcome));
                    json!({
                        "step": name,
                        "attempt": a.number,
                        "start": a.started_at.saturating_sub(run.started_at),
                        "end": end_of(a).saturating_sub(run.started_at),
                        "duration_ms": a.finished.as_ref().map(|f| f.duration_ms),
                        "outcome": bar_class(a),
                        "detail": a.finished.as_ref().map_or("never finished".to_string(), |f| describe_outcome(&f.outcome))
                            + &a.job.as_ref().map_or(String::new(), |job| format!(", Slurm job {job}")),
                        "exit_code": exit_code,
                        "signal": signal,
                    })
                })
                .collect();
            let span = run
                .attempts
                .iter()
                .map(|(_, a)| end_of(a))
                .chain([run.started_at + run.duration_ms()])
                .max()
                .unwrap_or(run.started_at)
                .saturating_sub(run.started_at);
            json!({
                "id": run.id,
                "started": format_time(run.started_at),
                "duration_ms": span,
                "result": run.result(live).as_str(),
                "exit_code": run.exit_code,
                "steps": run.steps(),
                "attempts": attempts,
            })
        })
        .collect();
    json!({ "version": 1, "runs": runs })
}

const CSS: &str = r##"
:root { --fg:#1d2430; --muted:#5b6573; --line:#dde2e8; --bg:#f6f8fa; --card:#fff;
  --ok:#43a047; --failed:#e53935; --interrupted:#fb8c00; --unfinished:#9e9e9e; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color:var(--fg); background:var(--bg); }
header { padding:18px 28px 10px; background:var(--card); border-bottom:1px solid var(--line); }
h1 { margin:0 0 4px; font-size:22px; }
h2 { margin:0 0 6px; font-size:17px; }
main { padding:16px 28px 40px; display:grid; gap:18px; }
section { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:14px 18px; }
.meta, .hint { color:var(--muted); margin:2px 0 8px; }
.plan { font-weight:600; margin:6px 0; }
code { font:12.5px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.counts, .legend { list-style:none; padding:0; margin:6px 0 0; display:flex; flex-wrap:wrap; gap:6px 12px; }
.chip { border:1.5px solid; border-radius:14px; padding:2px 10px; font:inherit; cursor:pointer; }
.chip[aria-pressed="true"] { box-shadow:0 0 0 2px var(--fg); }
.legend li { display:flex; align-items:center; gap:5px; color:var(--muted); font-size:12.5px; }
.swatch { display:inline-block; width:14px; height:14px; border:1.5px solid; border-radius:3px; }
.scroll { overflow-x:auto; }
svg.graph .name { font:600 13px system-ui, sans-serif; fill:#111; }
svg.graph .state { font:11px system-ui, sans-serif; fill:#333; }
svg.graph a:hover rect { stroke-width:3; }
.bar-ok { background:var(--ok); border-color:var(--ok); }
.bar-failed { background:var(--failed); border-color:var(--failed); }
.bar-interrupted { background:var(--interrupted); border-color:var(--interrupted); }
.bar-unfinished { background:repeating-linear-gradient(45deg,#bbb 0 3px,#eee 3px 6px); border-color:var(--unfinished); }
.run { margin:10px 0 16px; }
.run h3 { font-size:14px; margin:0 0 4px; }
.run .result { display:inline-block; padding:0 7px; border-radius:9px; font-size:12px; color:#fff; }
.result.ok { background:var(--ok); } .result.failed, .result.error { background:var(--failed); }
.result.interrupted { background:var(--interrupted); } .result.killed, .result.running { background:var(--unfinished); }
svg.gantt text { font:12px system-ui, sans-serif; fill:var(--fg); }
svg.gantt .axis { fill:var(--muted); font-size:11px; }
svg.gantt .grid { stroke:var(--line); }
svg.gantt rect.bar { rx:3; }
svg.gantt rect.ok { fill:var(--ok); } svg.gantt rect.failed { fill:var(--failed); }
svg.gantt rect.interrupted { fill:var(--interrupted); } svg.gantt rect.unfinished { stroke:var(--unfinished); }
svg.gantt text.label { fill:#fff; font-size:11px; font-weight:600; pointer-events:none; }
table { border-collapse:collapse; width:100%; }
th, td { text-align:left; vertical-align:top; padding:6px 8px; border-bottom:1px solid var(--line); }
thead th { font-size:12px; text-transform:uppercase; letter-spacing:.03em; color:var(--muted); }
td.num { text-align:right; }
tr:target { outline:2px solid #1565c0; outline-offset:-2px; }
tr.hidden { display:none; }
.state { display:inline-block; border:1.5px solid; border-radius:10px; padding:0 8px; white-space:nowrap; }
.attempt { display:inline-block; border-radius:4px; padding:0 5px; margin:1px 0; color:#fff; font-size:12px; white-space:nowrap; }
.attempt.ok { background:var(--ok); } .attempt.failed { background:var(--failed); }
.attempt.interrupted { background:var(--interrupted); } .attempt.unfinished { background:var(--unfinished); }
.why p { margin:0; } .changes { margin:0; padding-left:18px; }
.digest { color:var(--muted); font:12px ui-monospace, monospace; }
.warning { color:#b26a00; }
.exit { color:var(--muted); }
details.log { border:1px solid var(--line); border-radius:8px; padding:6px 10px; margin:8px 0; }
details.log summary { cursor:pointer; }
pre { background:#111820; color:#e6edf3; padding:10px 12px; border-radius:6px; overflow-x:auto; margin:6px 0 2px; font:12px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.empty { color:var(--muted); font-style:italic; }
.error { color:var(--failed); font-weight:600; }
"##;

const JS: &str = r##"
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  function el(name, attrs, parent) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function dur(ms) {
    if (ms < 1000) return ms + "ms";
    if (ms < 60000) return Math.floor(ms / 1000) + "." + Math.floor(ms % 1000 / 100) + "s";
    if (ms < 3600000) { var s = Math.floor(ms % 60000 / 1000); return Math.floor(ms / 60000) + "m" + (s < 10 ? "0" : "") + s + "s"; }
    var m = Math.floor(ms % 3600000 / 60000); return Math.floor(ms / 3600000) + "h" + (m < 10 ? "0" : "") + m + "m";
  }
  function gantt(run, root) {
    var box = document.createElement("div");
    box.className = "run";
    box.setAttribute("data-run", run.id);
    var h = document.createElement("h3");
    h.innerHTML = "Run " + run.id + " <span class=\"result " + run.result + "\">" + run.result + "</span> ";
    h.appendChild(document.createTextNode("started " + run.started + ", " + dur(run.duration_ms)));
    box.appendChild(h);
    root.appendChild(box);
    if (!run.attempts.length) {
      var p = document.createElement("p"); p.className = "empty";
      p.textContent = "No step ran in this run."; box.appendChild(p); return;
    }
    var labelW = 10 + 7.2 * Math.max.apply(null, run.steps.map(function (s) { return s.length; }));
    labelW = Math.min(Math.max(labelW, 80), 260);
    var chartW = Math.max(360, Math.min(980, (root.clientWidth || 1000) - labelW - 30));
    var rowH = 24, top = 22, span = Math.max(run.duration_ms, 1);
    var height = top + rowH * run.steps.length + 6;
    var svg = el("svg", { "class": "gantt", "data-run": run.id, width: labelW + chartW + 16, height: height,
      viewBox: "0 0 " + (labelW + chartW + 16) + " " + height, role: "img", "aria-label": "timeline of run " + run.id }, box);
    var defs = el("defs", {}, svg);
    var pat = el("pattern", { id: "hatch-" + run.id, width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" }, defs);
    el("rect", { width: 6, height: 6, fill: "#eee" }, pat);
    el("rect", { width: 3, height: 6, fill: "#bbb" }, pat);
    for (var t = 0; t <= 4; t++) {
      var x = labelW + chartW * t / 4;
      el("line", { "class": "grid", x1: x, x2: x, y1: top - 4, y2: height - 4 }, svg);
      var tx = el("text", { "class": "axis", x: x, y: 12, "text-anchor": t === 0 ? "start" : t === 4 ? "end" : "middle" }, svg);
      tx.textContent = dur(Math.round(span * t / 4));
    }
    run.steps.forEach(function (step, i) {
      var y = top + i * rowH;
      var label = el("text", { x: labelW - 8, y: y + 16, "text-anchor": "end" }, svg);
      label.textContent = step;
      run.attempts.filter(function (a) { return a.step === step; }).forEach(function (a) {
        var x = labelW + chartW * a.start / span;
        var w = Math.max(3, chartW * (a.end - a.start) / span);
        var r = el("rect", { "class": "bar " + a.outcome, x: x, y: y + 3, width: w, height: rowH - 6,
          "data-step": a.step, "data-attempt": a.attempt, "data-outcome": a.outcome }, svg);
        if (a.outcome === "unfinished") r.setAttribute("fill", "url(#hatch-" + run.id + ")");
        var title = el("title", {}, r);
        title.textContent = a.step + " attempt " + a.attempt + ": " + a.detail +
          (a.duration_ms == null ? "" : ", " + dur(a.duration_ms)) + " (from " + dur(a.start) + ")";
        if (w > 26) {
          var lt = el("text", { "class": "label", x: x + 5, y: y + 16 }, svg);
          lt.textContent = "#" + a.attempt;
        }
      });
    });
  }
  function filters() {
    var chips = document.querySelectorAll(".chip[data-filter]");
    var rows = document.querySelectorAll("#steps-table tbody tr");
    var active = null;
    Array.prototype.forEach.call(chips, function (chip) {
      chip.setAttribute("aria-pressed", "false");
      chip.addEventListener("click", function () {
        active = active === chip.dataset.filter ? null : chip.dataset.filter;
        Array.prototype.forEach.call(chips, function (c) {
          c.setAttribute("aria-pressed", String(c.dataset.filter === active));
        });
        Array.prototype.forEach.call(rows, function (row) {
          row.classList.toggle("hidden", active !== null && row.dataset.kind !== active);
        });
      });
    });
  }
  try {
    var data = JSON.parse(document.getElementById("report-data").textContent);
    var root = document.getElementById("gantt");
    data.runs.forEach(function (run) { gantt(run, root); });
    filters();
    document.body.setAttribute("data-rendered", "ok");
  } catch (e) {
    var msg = document.createElement("p");
    msg.className = "error";
    msg.textContent = "The timeline could not be drawn: " + e;
    document.getElementById("gantt").appendChild(msg);
    document.body.setAttribute("data-rendered", "error");
  }
})();
"##;
