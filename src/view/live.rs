//! The live display, for a terminal: what scrolls (finished steps,
//! failures, retries) is printed as plain [`Console`] lines, and below it a
//! status area is redrawn in place:
//!
//! ```text
//! ok     generate (1.2s)
//!   clean      3.1s  (usually 4.0s)
//!   aggregate  0.4s  (attempt 2)
//! [1/4] [######------------------] 4.6s  ETA 6s
//! ```
//!
//! One line per running step with its elapsed time, then the overall
//! `[done/total]` bar with an estimate of the time left, from how long the
//! same steps took when they last ran. A background thread redraws it (the
//! elapsed times change even when nothing happens), at most every
//! [`MIN_REDRAW`], so a flood of events never floods the terminal; the area
//! is cleared before the summary and whenever the display is dropped, so
//! what stays on the screen is exactly the plain lines.
//!
//! Like n2's fancy console, it is chosen when stderr is a terminal; everywhere
//! else [`Console`] alone prints the same lines without the area.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use unicode_width::UnicodeWidthStr;

use crate::journal::Outcome;
use crate::pipeline::{Pipeline, StepId};
use crate::plan::Plan;
use crate::run::scheduler::RunSummary;
use crate::state::history::History;
use crate::style::{Paint, Style};
use crate::time::format_duration_ms;
use crate::view::progress::{Console, ConsoleOptions, Progress};

/// The shortest time between two redraws of the status area: at most 20 a
/// second.
pub const MIN_REDRAW: Duration = Duration::from_millis(50);

/// How often the area is redrawn while nothing happens, for the elapsed
/// times and the estimate.
const TICK: Duration = Duration::from_millis(100);

/// The live display. See the module documentation.
pub struct Live {
    shared: Arc<Shared>,
    ticker: Option<JoinHandle<()>>,
    /// Formats the lines that scroll above the area.
    lines: Console<Vec<u8>>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

struct State {
    out: Box<dyn Write + Send>,
    style: Style,
    /// A fixed terminal size (columns, rows), for tests; else asked of
    /// stderr at every redraw, so a resized window is followed.
    size: Option<(usize, usize)>,
    jobs: usize,
    /// Between the plan and the summary.
    active: bool,
    started: Instant,
    total: usize,
    done: usize,
    failed: usize,
    /// Steps of the plan not finished yet, for the estimate.
    remaining: HashSet<StepId>,
    running: Vec<Running>,
    /// How long each step took when it last ran.
    expected: HashMap<StepId, u64>,
    /// Lines of the status area on the screen now.
    drawn: usize,
    last_draw: Option<Instant>,
    /// The area shows something outdated (or nothing) and is due a redraw.
    dirty: bool,
    stop: bool,
    /// Redraws so far.
    draws: u64,
}

struct Running {
    id: StepId,
    name: String,
    attempt: u32,
    since: Instant,
}

impl Live {
    /// A live display writing to stderr.
    pub fn stderr(options: ConsoleOptions, jobs: usize) -> Live {
        Live::new(Box::new(io::stderr()), options, jobs, None)
    }

    /// A live display writing to `out`; `size` fixes the terminal's
    /// (columns, rows) instead of asking stderr.
    pub fn new(
        out: Box<dyn Write + Send>,
        mut options: ConsoleOptions,
        jobs: usize,
        size: Option<(usize, usize)>,
    ) -> Live {
        options.show_starts = options.verbose;
        let style = options.style;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                out,
                style,
                size,
                jobs: jobs.max(1),
                active: false,
                started: Instant::now(),
                total: 0,
                done: 0,
                failed: 0,
                remaining: HashSet::new(),
                running: Vec::new(),
                expected: HashMap::new(),
                drawn: 0,
                last_draw: None,
                dirty: false,
                stop: false,
                draws: 0,
            }),
            wake: Condvar::new(),
        });
        let ticker = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("stepwise-live".into())
                .spawn(move || tick(&shared))
                .ok()
        };
        Live {
            shared,
            ticker,
            lines: Console::new(Vec::new(), options),
        }
    }

    /// How many times the status area was drawn.
    pub fn draws(&self) -> u64 {
        self.lock().draws
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Prints what the console wrote above the area, and updates the state.
    fn update(&mut self, change: impl FnOnce(&mut State)) {
        let text = std::mem::take(self.lines.writer());
        let mut state = self.lock();
        change(&mut state);
        state.dirty = true;
        state.emit(&text);
        drop(state);
        self.shared.wake.notify_one();
    }

    /// Lists an attempt with the steps running now, from this moment.
    fn add_running(&mut self, pipeline: &Pipeline, id: StepId, attempt: u32) {
        let name = pipeline.step(id).name.clone();
        self.update(|s| {
            s.running.push(Running {
                id,
                name,
                attempt,
                since: Instant::now(),
            })
        });
    }

    /// Clears the area for good and stops redrawing it.
    fn close(&mut self) {
        {
            let mut state = self.lock();
            state.active = false;
            state.stop = true;
            let mut buf = String::new();
            state.clear(&mut buf);
            let _ = state.out.write_all(buf.as_bytes());
            let _ = state.out.flush();
        }
        self.shared.wake.notify_one();
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.close();
    }
}

/// The background thread: redraws the area when it is due.
fn tick(shared: &Shared) {
    let mut state = shared
        .state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    loop {
        if state.stop {
            return;
        }
        let now = Instant::now();
        let wait = match state.due(now) {
            Some(wait) if wait.is_zero() => {
                let mut buf = String::new();
                state.clear(&mut buf);
                state.draw(&mut buf, now);
                let _ = state.out.write_all(buf.as_bytes());
                let _ = state.out.flush();
                TICK
            }
            Some(wait) => wait,
            None => Duration::from_secs(1),
        };
        state = shared
            .wake
            .wait_timeout(state, wait)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .0;
    }
}

impl State {
    /// How long until the area is due a redraw (zero: now), `None` when it
    /// is not shown.
    fn due(&self, now: Instant) -> Option<Duration> {
        if !self.active {
            return None;
        }
        let Some(last) = self.last_draw else {
            return Some(Duration::ZERO);
        };
        let since = now.saturating_duration_since(last);
        let period = if self.dirty { MIN_REDRAW } else { TICK };
        Some(period.saturating_sub(since))
    }

    /// Writes `text` above the area: clears the area, prints, and redraws
    /// it unless it was drawn less than [`MIN_REDRAW`] ago (the ticker will).
    fn emit(&mut self, text: &[u8]) {
        let now = Instant::now();
        let may_draw = self.due(now).is_some_and(|d| d.is_zero());
        if text.is_empty() && !may_draw {
            return;
        }
        let mut buf = String::new();
        if !text.is_empty() || may_draw {
            self.clear(&mut buf);
        }
        buf.push_str(&String::from_utf8_lossy(text));
        if may_draw {
            self.draw(&mut buf, now);
        }
        let _ = self.out.write_all(buf.as_bytes());
        let _ = self.out.flush();
    }

    fn clear(&mut self, buf: &mut String) {
        if self.drawn > 0 {
            buf.push_str(&format!("\r\x1b[{}A\x1b[J", self.drawn));
            self.drawn = 0;
        }
    }

    fn draw(&mut self, buf: &mut String, now: Instant) {
        if !self.active {
            return;
        }
        let (cols, rows) = self.size.unwrap_or_else(terminal_size);
        let width = cols.saturating_sub(1).max(10);
        let lines = self.area(now, width, rows);
        for line in &lines {
            buf.push_str(line);
            buf.push('\n');
        }
        self.drawn = lines.len();
        self.last_draw = Some(now);
        self.dirty = false;
        self.draws += 1;
    }

    /// The lines of the area, each at most `width` characters wide.
    fn area(&self, now: Instant, width: usize, rows: usize) -> Vec<String> {
        let mut lines = Vec::new();
        // Leave the line being typed on, and the bar, on the screen.
        let room = rows.saturating_sub(3).max(1);
        let name_width = self
            .running
            .iter()
            .map(|r| r.name.width())
            .max()
            .unwrap_or(0)
            .min(width / 2);
        let shown = if self.running.len() > room {
            room - 1
        } else {
            self.running.len()
        };
        for r in &self.running[..shown] {
            let elapsed = now.saturating_duration_since(r.since).as_millis() as u64;
            let mut line = format!(
                "  {}  {}",
                fit(&r.name, name_width),
                format_duration_ms(elapsed)
            );
            if r.attempt > 1 {
                line += &format!("  (attempt {})", r.attempt);
            }
            if let Some(&usual) = self.expected.get(&r.id) {
                line += &format!("  (usually {})", format_duration_ms(usual));
            }
            lines.push(self.style.paint(Paint::Dim, &truncate(&line, width)));
        }
        if shown < self.running.len() {
            lines.push(format!("  ... and {} more", self.running.len() - shown));
        }
        lines.push(self.bar(now, width));
        lines
    }

    /// `[3/7] [#########---------] 12.4s  ETA 8s`.
    fn bar(&self, now: Instant, width: usize) -> String {
        let count = format!("[{}/{}]", self.done, self.total);
        let elapsed = format_duration_ms(now.duration_since(self.started).as_millis() as u64);
        let mut tail = format!(" {elapsed}");
        if let Some((eta, sure)) = self.eta(now) {
            tail += &format!(
                "  ETA {}{}",
                format_duration_ms(eta),
                if sure { "" } else { "+" }
            );
        }
        if self.failed > 0 {
            tail += &format!("  {} failed", self.failed);
        }
        let room = width.saturating_sub(count.width() + tail.width() + 4);
        let slots = room.min(30);
        if slots < 5 {
            let plain = truncate(&format!("{count}{tail}"), width);
            return self.style.paint(Paint::Bold, &plain);
        }
        let filled = (slots * self.done).checked_div(self.total).unwrap_or(0);
        let bar = format!("{}{}", "#".repeat(filled), "-".repeat(slots - filled));
        let paint = if self.failed > 0 {
            Paint::Bad
        } else {
            Paint::Good
        };
        format!(
            "{} [{}]{}",
            self.style.paint(Paint::Bold, &count),
            self.style.paint(paint, &bar),
            tail
        )
    }

    /// The time left, from how long each unfinished step took when it last
    /// ran, spread over the jobs; `sure` is false when some of them never
    /// ran before (the estimate is then a lower bound).
    fn eta(&self, now: Instant) -> Option<(u64, bool)> {
        if self.remaining.is_empty() {
            return None;
        }
        let mut work = 0u64;
        let mut known = 0usize;
        let running: HashMap<StepId, &Running> = self.running.iter().map(|r| (r.id, r)).collect();
        for id in &self.remaining {
            let Some(&expected) = self.expected.get(id) else {
                continue;
            };
            known += 1;
            let spent = running.get(id).map_or(0, |r| {
                now.saturating_duration_since(r.since).as_millis() as u64
            });
            work += expected.saturating_sub(spent);
        }
        if known == 0 {
            return None;
        }
        let lanes = self.jobs.min(self.remaining.len()).max(1) as u64;
        Some((work / lanes, known == self.remaining.len()))
    }
}

impl Progress for Live {
    fn history(&mut self, pipeline: &Pipeline, history: &History) {
        let mut expected = HashMap::new();
        for id in pipeline.ids() {
            let name = &pipeline.step(id).name;
            let Some(h) = history.step(name) else {
                continue;
            };
            // A success says how long the step takes; a failed or stopped
            // attempt says nothing about it. A forgotten success still does.
            let took = [h.success.as_ref(), h.last.as_ref()]
                .into_iter()
                .flatten()
                .filter(|a| !a.imported() && a.ok())
                .find_map(|a| a.finished.as_ref().map(|f| f.duration_ms));
            if let Some(ms) = took {
                expected.insert(id, ms);
            }
        }
        self.lock().expected = expected;
    }

    fn plan(&mut self, pipeline: &Pipeline, plan: &Plan) {
        self.lines.plan(pipeline, plan);
        let remaining: HashSet<StepId> = plan.to_run().collect();
        self.update(|s| {
            s.total = remaining.len();
            s.remaining = remaining;
            s.started = Instant::now();
            s.active = s.total > 0;
        });
    }

    fn step_started(&mut self, pipeline: &Pipeline, id: StepId, attempt: u32, log: &Path) {
        self.lines.step_started(pipeline, id, attempt, log);
        self.add_running(pipeline, id, attempt);
    }

    fn step_output(&mut self, pipeline: &Pipeline, id: StepId, bytes: &[u8]) {
        self.lines.step_output(pipeline, id, bytes);
        if !self.lines.writer().is_empty() {
            self.update(|_| {});
        }
    }

    fn step_finished(
        &mut self,
        pipeline: &Pipeline,
        id: StepId,
        attempt: u32,
        outcome: &Outcome,
        duration_ms: u64,
        log: Option<&Path>,
    ) {
        self.lines
            .step_finished(pipeline, id, attempt, outcome, duration_ms, log);
        let ok = outcome.ok();
        self.update(|s| {
            s.running.retain(|r| r.id != id);
            // A failure counts as done unless a retry is scheduled next.
            s.remaining.remove(&id);
            s.done += 1;
            if !ok {
                s.failed += 1;
            }
        });
    }

    fn step_up_to_date(&mut self, pipeline: &Pipeline, id: StepId) {
        self.lines.step_up_to_date(pipeline, id);
        self.update(|s| {
            s.remaining.remove(&id);
            s.done += 1;
        });
    }

    fn warning(&mut self, message: &str) {
        self.lines.warning(message);
        self.update(|_| {});
    }

    fn leftovers_killed(&mut self, pids: &[u32]) {
        self.lines.leftovers_killed(pids);
        self.update(|_| {});
    }

    fn job_submitted(&mut self, pipeline: &Pipeline, id: StepId, attempt: u32, job: &str) {
        self.lines.job_submitted(pipeline, id, attempt, job);
        self.update(|_| {});
    }

    fn reattached(&mut self, step: &str, attempt: u32, job: &str, what: &str) {
        self.lines.reattached(step, attempt, job, what);
        self.update(|_| {});
    }

    fn job_adopted(&mut self, pipeline: &Pipeline, id: StepId, attempt: u32) {
        // Listed with the steps running now, as if started at this moment:
        // the job's own start is in the journal, not worth a squeue here.
        self.add_running(pipeline, id, attempt);
    }

    fn retry_scheduled(
        &mut self,
        pipeline: &Pipeline,
        id: StepId,
        retry: u32,
        retries: u32,
        delay: Duration,
    ) {
        self.lines
            .retry_scheduled(pipeline, id, retry, retries, delay);
        self.update(|s| {
            // Not done after all: it runs again.
            s.remaining.insert(id);
            s.done = s.done.saturating_sub(1);
            s.failed = s.failed.saturating_sub(1);
        });
    }

    fn interrupted(&mut self, signal: Signal, running: usize) {
        self.lines.interrupted(signal, running);
        self.update(|_| {});
    }

    fn summary(&mut self, pipeline: &Pipeline, summary: &RunSummary) {
        self.close();
        self.lines.summary(pipeline, summary);
        let text = std::mem::take(self.lines.writer());
        let mut state = self.lock();
        let _ = state.out.write_all(&text);
        let _ = state.out.flush();
    }

    fn nothing_to_do(&mut self, pipeline: &Pipeline, plan: &Plan) {
        self.close();
        self.lines.nothing_to_do(pipeline, plan);
        let text = std::mem::take(self.lines.writer());
        let mut state = self.lock();
        let _ = state.out.write_all(&text);
        let _ = state.out.flush();
    }
}

/// The longest start of `text` that takes at most `width` columns on
/// screen: a CJK character takes two, a combining mark none.
fn truncate(text: &str, width: usize) -> String {
    use unicode_width::UnicodeWidthChar;
    if text.width() <= width {
        return text.to_string();
    }
    let mut used = 0;
    text.chars()
        .take_while(|c| {
            used += c.width().unwrap_or(0);
            used <= width
        })
        .collect()
}

/// `text` cut or padded with spaces to exactly `width` columns on screen.
fn fit(text: &str, width: usize) -> String {
    let mut out = truncate(text, width);
    let pad = width.saturating_sub(out.width());
    out.extend(std::iter::repeat_n(' ', pad));
    out
}

/// The terminal's (columns, rows), from stderr; 80x24 when unknown.
fn terminal_size() -> (usize, usize) {
    match terminal_size::terminal_size_of(std::io::stderr()) {
        Some((terminal_size::Width(w), terminal_size::Height(h))) if w > 0 && h > 0 => {
            (w as usize, h as usize)
        }
        _ => (80, 24),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cut_and_padded_by_columns_on_screen_not_by_characters() {
        // Each of these takes two columns on a terminal.
        assert_eq!(truncate("写真写真", 5), "写真");
        assert_eq!(truncate("写真", 4), "写真");
        assert_eq!(fit("写真", 6), "写真  ");
        assert_eq!(fit("abc", 2), "ab");
    }

    #[test]
    fn a_slurm_job_adopted_from_a_dead_runner_is_listed_with_the_running_steps() {
        let pipeline = Pipeline::from_names(
            Path::new("stepwise.toml"),
            Path::new("/p"),
            ["align".to_string(), "call".to_string()],
        );
        let mut live = Live::new(
            Box::new(io::sink()),
            ConsoleOptions::default(),
            2,
            Some((80, 24)),
        );
        let call = pipeline.find("call").unwrap();
        live.job_adopted(&pipeline, call, 3);
        let state = live.lock();
        let running: Vec<(&str, u32)> = state
            .running
            .iter()
            .map(|r| (r.name.as_str(), r.attempt))
            .collect();
        assert_eq!(running, [("call", 3)]);
    }
}
