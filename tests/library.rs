//! Durable steps in a Rust program (`stepwise::Run`), end to end: the
//! example program killed in its third step and resumed, inputs, failures,
//! retries, large values, two processes on one state dir, and the command
//! line reading what a program recorded.
//!
//! Tests that need a second process run this very test binary again with
//! `CHILD` set: [`child_process`] then plays the part asked for and exits.

#[allow(dead_code)]
#[path = "../examples/durable.rs"]
mod example;

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stepwise::journal::{Outcome, Record};
use stepwise::plan::{Action, State};
use stepwise::state::dir::StateDir;
use stepwise::{Error, Run, StepError, StepKey};

const BIN: &str = env!("CARGO_BIN_EXE_stepwise");
/// Set in a child process: what it should do.
const CHILD: &str = "STEPWISE_LIBRARY_TEST_CHILD";
/// Set in a child process: its work dir.
const WORK: &str = "STEPWISE_LIBRARY_TEST_WORK";
/// The line of a child's stdout that carries its result.
const RESULT: &str = "CHILD RESULT: ";

/// Not a test of its own: the entry point of the child processes the other
/// tests start. Without `CHILD` in its environment it does nothing.
#[test]
fn child_process() {
    let Ok(mode) = std::env::var(CHILD) else {
        return;
    };
    let work = PathBuf::from(std::env::var(WORK).expect("the work dir"));
    let code = match mode.as_str() {
        // The example program; a slow `rank` when asked, to be killed in.
        "example" | "example-slow" => {
            let options = example::Options {
                work,
                min_len: 4,
                pause: if mode == "example-slow" {
                    Duration::from_secs(600)
                } else {
                    Duration::ZERO
                },
            };
            match example::run(&options) {
                Ok(outcome) => {
                    println!("{RESULT}{}", serde_json::to_string(&outcome).unwrap());
                    0
                }
                Err(e) => {
                    eprintln!("{e}");
                    1
                }
            }
        }
        // Holds a run open until killed.
        "hold" => match Run::open(work.join(".stepwise")) {
            Ok(_run) => {
                std::fs::write(work.join("holding"), b"").unwrap();
                std::thread::sleep(Duration::from_secs(600));
                0
            }
            Err(e) => {
                eprintln!("{e}");
                1
            }
        },
        other => panic!("unknown child mode {other}"),
    };
    std::process::exit(code);
}

fn spawn_child(mode: &str, work: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, mode)
        .env(WORK, work)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn child_outcome(child: Child) -> example::Outcome {
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed: {:?}\n--- stdout\n{stdout}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once(RESULT).map(|(_, json)| json))
        .unwrap_or_else(|| panic!("no result in\n{stdout}"));
    serde_json::from_str(line).unwrap()
}

#[track_caller]
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn effects(work: &Path) -> Vec<(String, usize)> {
    example::effects(work).into_iter().collect()
}

fn counts(pairs: &[(&str, usize)]) -> Vec<(String, usize)> {
    pairs.iter().map(|(s, n)| (s.to_string(), *n)).collect()
}

/// `stepwise ARGS...` in `dir`: exit code, stdout, stderr.
fn stepwise(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn status_json(work: &Path) -> Vec<(String, String)> {
    let (code, stdout, stderr) = stepwise(work, &["status", "--state-dir", ".stepwise", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn records(state_dir: &Path) -> Vec<Record> {
    let mut records = Vec::new();
    StateDir::new(state_dir)
        .read(&mut |r| records.push(r))
        .unwrap();
    records
}

/// The outcomes of every finished attempt of `step`, in order.
fn outcomes(state_dir: &Path, step: &str) -> Vec<Outcome> {
    records(state_dir)
        .into_iter()
        .filter_map(|r| match r {
            Record::AttemptFinished {
                step: s, outcome, ..
            } if s == step => Some(outcome),
            _ => None,
        })
        .collect()
}

#[test]
fn killed_in_the_third_step_then_resumed_without_redoing_the_first_two() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let mut killed = spawn_child("example-slow", work);
    let killed_pid = killed.id();
    wait_for("the third step to start", || {
        example::effects(work).contains_key("rank")
    });
    killed.kill().unwrap(); // SIGKILL
    killed.wait().unwrap();
    assert_eq!(
        effects(work),
        counts(&[("count", 1), ("fetch", 1), ("rank", 1)])
    );
    // What the command line makes of it, from the journal alone.
    assert_eq!(
        status_json(work),
        [
            ("fetch".to_string(), "done".to_string()),
            ("count".to_string(), "done".to_string()),
            ("rank".to_string(), "interrupted".to_string()),
        ]
    );

    let outcome = child_outcome(spawn_child("example", work));
    assert_eq!(
        effects(work),
        counts(&[("count", 1), ("fetch", 1), ("publish", 1), ("rank", 2)]),
        "steps 1-2 must not run again"
    );
    // The value of `fetch` is the one the killed process recorded.
    assert_eq!(outcome.document.fetched_by_pid, killed_pid);
    assert_eq!(outcome.summary, "2 ran, 2 skipped as done");
    assert_eq!(
        outcome.top,
        [
            ("journal".into(), 3),
            ("steps".into(), 3),
            ("values".into(), 3)
        ]
    );
    assert_eq!(
        std::fs::read_to_string(&outcome.report).unwrap(),
        "journal 3\nsteps 3\nvalues 3\n"
    );
    // The killed run was closed as one whose process died.
    let runs = StateDir::new(work.join(".stepwise"))
        .load()
        .unwrap()
        .history
        .runs()
        .to_vec();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].ended.map(|(_, code)| code), Some(None));
    assert_eq!(runs[1].ended.map(|(_, code)| code), Some(Some(0)));
}

#[test]
fn a_changed_input_reruns_that_step_and_only_what_its_value_changes() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().to_path_buf();
    let options = |min_len| example::Options {
        work: work.clone(),
        min_len,
        pause: Duration::ZERO,
    };
    let first = example::run(&options(4)).unwrap();
    assert_eq!(first.summary, "4 ran, 0 skipped as done");
    let again = example::run(&options(4)).unwrap();
    assert_eq!(again.summary, "0 ran, 4 skipped as done");
    assert_eq!(again.counts, first.counts);
    assert_eq!(again.document, first.document);

    // Fewer words counted: `count` and `rank` run again, and `rank` comes
    // out the same, so `publish` does not.
    let fewer = example::run(&options(5)).unwrap();
    assert_eq!(fewer.summary, "2 ran, 2 skipped as done");
    assert_ne!(fewer.counts, first.counts);
    assert_eq!(fewer.top, first.top);
    assert_eq!(
        effects(&work),
        counts(&[("count", 2), ("fetch", 1), ("publish", 1), ("rank", 2)])
    );

    // A ranking that changes reaches `publish` too.
    let longer = example::run(&options(6)).unwrap();
    assert_eq!(longer.summary, "3 ran, 1 skipped as done");
    assert_ne!(longer.top, first.top);
    assert_eq!(
        effects(&work),
        counts(&[("count", 3), ("fetch", 1), ("publish", 2), ("rank", 3)])
    );

    // Back to the first input: the latest success was made with another
    // one, so it runs again, as a command's step would.
    let back = example::run(&options(4)).unwrap();
    assert_eq!(back.counts, first.counts);
    assert_eq!(example::effects(&work)["count"], 4);
}

#[test]
fn why_a_step_ran_is_in_the_summary_in_the_planners_words() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = BTreeMap::from([("threshold", 1)]);
    let step = |run: &mut Run, config: &BTreeMap<&str, i32>, version: &str| {
        let key = StepKey::new("clean")
            .input_named("config", config)
            .version(version);
        run.step_with(key, || Ok::<_, String>(config["threshold"] * 2))
            .unwrap()
    };
    let mut run = Run::open(&state).unwrap();
    assert_eq!(step(&mut run, &config, "1"), 2);
    let report = &run.summary().steps[0];
    assert_eq!(
        (report.action, report.state),
        (Action::Run, State::NeverRun)
    );
    run.finish().unwrap();

    let mut run = Run::open(&state).unwrap();
    let changed = BTreeMap::from([("threshold", 5)]);
    assert_eq!(step(&mut run, &changed, "1"), 10);
    let report = &run.summary().steps[0];
    assert_eq!((report.action, report.state), (Action::Run, State::Stale));
    assert_eq!(report.reason, "input changed: config");
    run.finish().unwrap();

    let mut run = Run::open(&state).unwrap();
    assert_eq!(step(&mut run, &changed, "2"), 10);
    assert_eq!(run.summary().steps[0].reason, "definition changed: version");
    run.finish().unwrap();

    let mut run = Run::open(&state).unwrap();
    assert_eq!(step(&mut run, &changed, "2"), 10);
    let report = &run.summary().steps[0];
    assert_eq!((report.action, report.state), (Action::Skip, State::Done));
    assert!(
        report.reason.starts_with("succeeded on "),
        "{}",
        report.reason
    );
    assert_eq!(
        run.finish().unwrap().to_string(),
        "0 ran, 1 skipped as done"
    );
}

#[test]
fn a_failing_step_is_recorded_with_its_message_and_runs_again_next_time() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join(".stepwise");
    let calls = Cell::new(0);
    let flaky = |fail: bool| {
        calls.set(calls.get() + 1);
        if fail {
            Err(format!("no rows in {}", "in.csv"))
        } else {
            Ok(vec![1, 2, 3])
        }
    };

    let mut run = Run::open(&state).unwrap();
    let loaded = run.step("load", || Ok::<_, String>("loaded".to_string()));
    assert_eq!(loaded.unwrap(), "loaded");
    match run.step("clean", || flaky(true)) {
        Err(StepError::Failed {
            step,
            attempt,
            error,
        }) => {
            assert_eq!((step.as_str(), attempt), ("clean", 1));
            assert_eq!(error, "no rows in in.csv");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    let e = run.step("report", || flaky(true)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "step `report` failed (attempt 1): no rows in in.csv"
    );
    let summary = run.finish().unwrap();
    assert_eq!(summary.to_string(), "3 ran (2 failed), 0 skipped as done");
    assert_eq!(
        outcomes(&state, "clean"),
        [Outcome::Error("no rows in in.csv".into())]
    );

    let (code, stdout, _) = stepwise(dir.path(), &["status", "--state-dir", ".stepwise"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("error: no rows in in.csv"), "{stdout}");
    let (_, plan, _) = stepwise(dir.path(), &["plan", "--state-dir", ".stepwise"]);
    assert!(
        plan.starts_with("Resume plan: 1 done, 2 remaining\n"),
        "{plan}"
    );
    assert!(
        plan.contains("attempt 1 failed on ") && plan.contains(": error: no rows in in.csv"),
        "the plan says why: {plan}"
    );

    let mut run = Run::open(&state).unwrap();
    assert_eq!(
        run.step("load", || Err::<String, _>("must not run"))
            .unwrap(),
        "loaded"
    );
    assert_eq!(run.step("clean", || flaky(false)).unwrap(), [1, 2, 3]);
    assert_eq!(calls.get(), 3);
    let report = &run.summary().steps[1];
    assert_eq!((report.state, report.attempts), (State::Failed, 1));
    run.finish().unwrap();
    assert_eq!(
        outcomes(&state, "clean"),
        [Outcome::Error("no rows in in.csv".into()), Outcome::Success]
    );
}

#[test]
fn retries_back_off_and_every_attempt_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join(".stepwise");
    let calls = Cell::new(0u32);
    let fails_twice = || {
        calls.set(calls.get() + 1);
        if calls.get() <= 2 {
            Err(format!("try {} failed", calls.get()))
        } else {
            Ok(calls.get())
        }
    };
    let mut run = Run::open(&state).unwrap();
    let started = Instant::now();
    let key = StepKey::new("fetch")
        .retries(2)
        .retry_delay(Duration::from_millis(40));
    assert_eq!(run.step_with(key, fails_twice).unwrap(), 3);
    // 40ms, then 80ms: the delay doubles.
    assert!(started.elapsed() >= Duration::from_millis(120));
    assert_eq!(run.summary().steps[0].attempts, 3);

    let key = StepKey::new("upload")
        .retries(1)
        .retry_delay(Duration::from_millis(1));
    match run.step_with(key, || Err::<(), _>("refused")) {
        Err(StepError::Failed { attempt, .. }) => assert_eq!(attempt, 2),
        other => panic!("expected a failure, got {other:?}"),
    }
    run.finish().unwrap();
    assert_eq!(
        outcomes(&state, "fetch"),
        [
            Outcome::Error("try 1 failed".into()),
            Outcome::Error("try 2 failed".into()),
            Outcome::Success
        ]
    );
    assert_eq!(outcomes(&state, "upload").len(), 2);
}

#[test]
fn values_that_cannot_be_recorded_are_clear_errors_and_leave_the_step_undone() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join(".stepwise");
    let mut run = Run::open(&state).unwrap();

    let e = run
        .step("pairs", || {
            Ok::<_, String>(HashMap::from([((1u8, 2u8), "three".to_string())]))
        })
        .unwrap_err();
    let message = e.to_string();
    assert!(
        message.starts_with("step `pairs`: its value cannot be serialized: key must be a string"),
        "{message}"
    );
    let help = e.help().unwrap_or_default();
    assert!(
        help.starts_with("a step's value is recorded as JSON"),
        "{help}"
    );
    assert!(!message.contains("help"), "the message is plain: {message}");

    // NaN is written as `null`, which is no f64: refused before it is
    // recorded, not when a later run cannot read it.
    let e = run.step("ratio", || Ok::<_, String>(f64::NAN)).unwrap_err();
    assert!(e.to_string().contains("does not read back as a f64"), "{e}");
    assert!(matches!(e, StepError::Stepwise(Error::Step { .. })));
    run.finish().unwrap();
    assert!(matches!(
        outcomes(&state, "pairs").as_slice(),
        [Outcome::Error(m)] if m.contains("key must be a string")
    ));

    let mut run = Run::open(&state).unwrap();
    assert_eq!(run.step("ratio", || Ok::<_, String>(0.5)).unwrap(), 0.5);
    run.finish().unwrap();
}

#[test]
fn a_recorded_value_of_another_type_is_a_clear_error_until_the_version_changes() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join(".stepwise");
    let mut run = Run::open(&state).unwrap();
    run.step("rows", || Ok::<_, String>(vec![1u32, 2])).unwrap();
    run.finish().unwrap();

    let mut run = Run::open(&state).unwrap();
    let e = run
        .step("rows", || Ok::<_, String>("text".to_string()))
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("its recorded value does not read as a alloc::string::String"),
        "{e}"
    );
    let help = e.help().unwrap_or_default();
    assert!(help.contains("StepKey::version"), "{help}");
    drop(run);
    let mut run = Run::open(&state).unwrap();
    let key = StepKey::new("rows").version("2");
    assert_eq!(
        run.step_with(key, || Ok::<_, String>("text".to_string()))
            .unwrap(),
        "text"
    );
    run.finish().unwrap();
}

#[test]
fn large_values_live_in_files_beside_the_journal_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join(".stepwise");
    let big: Vec<u64> = (0..20_000).collect();
    let small = vec![1u64, 2, 3];

    let mut run = Run::open(&state).unwrap();
    assert_eq!(
        run.step("big", || Ok::<_, String>(big.clone())).unwrap(),
        big
    );
    assert_eq!(
        run.step("small", || Ok::<_, String>(small.clone()))
            .unwrap(),
        small
    );
    run.finish().unwrap();

    let files: Vec<PathBuf> = std::fs::read_dir(state.join("values"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "only the large value has a file: {files:?}");
    let json = std::fs::read_to_string(&files[0]).unwrap();
    assert_eq!(serde_json::from_str::<Vec<u64>>(&json).unwrap(), big);
    let journal = std::fs::read_to_string(state.join("journal.jsonl")).unwrap();
    assert!(journal.lines().all(|l| l.len() < 1000), "{journal}");
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(journal.contains(&format!("\"value_file\":\"values/{name}\"")));
    assert!(journal.contains("\"value\":[1,2,3]"));

    let mut run = Run::open(&state).unwrap();
    let back: Vec<u64> = run.step("big", || Err("must not run")).unwrap();
    assert_eq!(back, big);
    run.finish().unwrap();

    // A damaged value is never returned; the error says how to recover.
    std::fs::write(&files[0], json.replace("19999", "19998")).unwrap();
    let mut run = Run::open(&state).unwrap();
    let e = run
        .step("big", || Err::<Vec<u64>, _>("must not run"))
        .unwrap_err();
    assert!(e.to_string().contains("is damaged"), "{e}");
    let help = e.help().unwrap_or_default();
    assert!(help.contains("stepwise forget big --state-dir"), "{help}");
    run.forget("big").unwrap();
    drop(run);
    let mut run = Run::open(&state).unwrap();
    assert_eq!(
        run.step("big", || Ok::<_, String>(big.clone())).unwrap(),
        big
    );
    run.finish().unwrap();

    // A lower limit moves even small values out of the journal.
    let mut run = Run::builder().inline_limit(2).open(&state).unwrap();
    run.step("tiny", || Ok::<_, String>(vec![7, 8])).unwrap();
    run.finish().unwrap();
    let journal = std::fs::read_to_string(state.join("journal.jsonl")).unwrap();
    assert!(!journal.contains("\"value\":[7,8]"));
    let mut run = Run::open(&state).unwrap();
    let tiny: Vec<u8> = run.step("tiny", || Err("must not run")).unwrap();
    assert_eq!(tiny, [7, 8]);
}

#[test]
fn a_second_process_is_refused_as_by_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let mut holder = spawn_child("hold", work);
    wait_for("the child to hold the run", || {
        work.join("holding").exists()
    });

    match Run::open(work.join(".stepwise")) {
        Err(e @ Error::Locked { .. }) => {
            let Error::Locked { holder: who, .. } = &e else {
                unreachable!()
            };
            assert_eq!(who.as_ref().and_then(|h| h.pid), Some(holder.id()));
            assert_eq!(e.exit_code(), 3);
            let message = e.to_string();
            assert!(
                message.contains(&format!("process {}", holder.id())),
                "{message}"
            );
            assert!(
                message.contains("through the stepwise library"),
                "{message}"
            );
        }
        other => panic!("expected the lock to be refused, got {other:?}"),
    }
    // The command line's writers take the same lock.
    let (code, _, stderr) = stepwise(work, &["forget", "--all", "--state-dir", ".stepwise"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("already running"), "{stderr}");
    // Readers do not need it.
    let (code, stdout, _) = stepwise(work, &["status", "--state-dir", ".stepwise"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains(&format!("process {}", holder.id())),
        "{stdout}"
    );

    holder.kill().unwrap();
    holder.wait().unwrap();
    let run = Run::open(work.join(".stepwise")).unwrap();
    assert_eq!(run.id(), 2);
    run.finish().unwrap();
}

#[test]
fn names_follow_the_pipeline_files_rules_and_stand_for_one_step_per_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = Run::open(dir.path().join(".stepwise")).unwrap();
    for bad in ["", ".hidden", "-x", "a b", "../up", "naïve"] {
        let e = run.step(bad, || Ok::<_, String>(1)).unwrap_err();
        let message = e.to_string();
        assert!(message.contains("invalid step name"), "{bad}: {message}");
        let help = e.help().unwrap_or_default();
        assert!(help.contains("letters, digits"), "{bad}: {help}");
    }
    run.step("load", || Ok::<_, String>(1)).unwrap();
    let e = run.step("load", || Ok::<_, String>(2)).unwrap_err();
    assert!(
        e.to_string()
            .contains("this step already produced its value in this run"),
        "{e}"
    );
    // A failed step may be tried again in the same run, by hand.
    let mut tries = 0;
    let value = loop {
        match run.step("flaky", || {
            tries += 1;
            if tries < 3 { Err("not yet") } else { Ok(tries) }
        }) {
            Ok(value) => break value,
            Err(StepError::Failed { .. }) => continue,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(value, 3);
    let summary = run.finish().unwrap();
    // One report per step: flaky's three calls are one step that succeeded.
    assert_eq!(summary.to_string(), "2 ran, 0 skipped as done");
    let flaky = summary.steps.iter().find(|s| s.name == "flaky").unwrap();
    assert_eq!((flaky.attempts, flaky.ok), (3, true));
}

#[test]
fn a_panicking_step_is_recorded_as_failed_and_the_panic_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join(".stepwise");
    let caught = std::panic::catch_unwind(|| {
        let mut run = Run::open(&state).unwrap();
        let _: u32 = run
            .step("boom", || -> Result<u32, String> {
                panic!("index out of range")
            })
            .unwrap();
    });
    assert!(caught.is_err());
    assert_eq!(
        outcomes(&state, "boom"),
        [Outcome::Error("panicked: index out of range".into())]
    );
    // The dropped run recorded its end; the lock is free.
    let loaded = StateDir::new(&state).load().unwrap();
    assert_eq!(
        loaded.history.runs()[0].ended.map(|(_, c)| c),
        Some(Some(1))
    );
    let mut run = Run::open(&state).unwrap();
    assert_eq!(run.step("boom", || Ok::<_, String>(4)).unwrap(), 4);
}

#[test]
fn the_command_line_reads_inspects_and_forgets_a_programs_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().to_path_buf();
    let options = example::Options {
        work: work.clone(),
        min_len: 4,
        pause: Duration::ZERO,
    };
    example::run(&options).unwrap();

    let (code, plan, _) = stepwise(&work, &["plan", "--state-dir", ".stepwise"]);
    assert_eq!(code, 0);
    assert!(
        plan.starts_with("Resume plan: 4 done, 0 remaining\n"),
        "{plan}"
    );
    let names: Vec<&str> = plan
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(
        names,
        ["fetch", "count", "rank", "publish"],
        "first-seen order"
    );

    let (code, export, _) = stepwise(&work, &["checkpoint", "export", "--state-dir", ".stepwise"]);
    assert_eq!(code, 0);
    assert_eq!(
        stepwise::checkpoint::parse_checkpoint(export.as_bytes()).unwrap(),
        [
            ("fetch".to_string(), true),
            ("count".to_string(), true),
            ("rank".to_string(), true),
            ("publish".to_string(), true)
        ]
    );

    // Forgetting through the command line makes the program run it again.
    let (code, _, stderr) = stepwise(&work, &["forget", "count", "--state-dir", ".stepwise"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        status_json(&work)[1],
        ("count".to_string(), "forgotten".to_string())
    );
    let outcome = example::run(&options).unwrap();
    assert_eq!(outcome.summary, "1 ran, 3 skipped as done");
    assert_eq!(example::effects(&work)["count"], 2);

    // What needs a pipeline file says so.
    for args in [
        &["run", "--state-dir", ".stepwise"][..],
        &["why", "count", "--state-dir", ".stepwise"],
    ] {
        let (code, _, stderr) = stepwise(&work, args);
        assert_eq!(code, 2, "{args:?}");
        assert!(stderr.contains("needs a pipeline file"), "{stderr}");
    }
    let (code, _, stderr) = stepwise(&work, &["status", "--state-dir", "nowhere"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no state dir at nowhere"), "{stderr}");
    // A folder that is no state dir (the program's own folder, by mistake).
    let (code, _, stderr) = stepwise(&work, &["plan", "--state-dir", "."]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no state dir at ."), "{stderr}");
}

#[test]
fn gc_removes_value_files_no_attempt_returns_and_keeps_the_current_ones() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join(".stepwise");
    let values = |state: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(state.join("values"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let old: Vec<u64> = (0..20_000).collect();
    let new: Vec<u64> = (1..20_001).collect();
    let mut run = Run::open(&state).unwrap();
    run.step("big", || Ok::<_, String>(old.clone())).unwrap();
    run.finish().unwrap();
    let mut run = Run::open(&state).unwrap();
    run.forget("big").unwrap();
    run.step("big", || Ok::<_, String>(new.clone())).unwrap();
    run.finish().unwrap();
    assert_eq!(values(&state).len(), 2, "the old value and the new");
    // What a program that died between writing a value and recording it
    // leaves behind.
    let orphan = state.join("values/0123456789abcdef0123456789abcdef.json");
    std::fs::write(&orphan, "[1]").unwrap();

    let (code, _, stderr) = stepwise(dir.path(), &["gc", "--state-dir", ".stepwise"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("2 step value file(s) no attempt returns removed"),
        "{stderr}"
    );
    assert_eq!(values(&state).len(), 1);
    let mut run = Run::open(&state).unwrap();
    let back: Vec<u64> = run.step("big", || Err("must not run")).unwrap();
    assert_eq!(back, new, "the current value is kept and still read back");
    run.finish().unwrap();
}

#[test]
fn a_step_that_fails_and_is_called_again_successfully_counts_once_as_succeeded() {
    // The program's own retry: the first call fails, the second succeeds.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join(".stepwise");
    let mut run = Run::open(&state).unwrap();
    run.step("load", || Ok::<_, String>(1)).unwrap();
    assert!(run.step("fetch", || Err::<u32, _>("timeout")).is_err());
    assert_eq!(run.step("fetch", || Ok::<_, String>(7)).unwrap(), 7);
    let summary = run.finish().unwrap();
    assert_eq!(summary.to_string(), "2 ran, 0 skipped as done");
    assert_eq!(summary.exit_code(), 0);
    let fetch = summary.steps.iter().find(|s| s.name == "fetch").unwrap();
    assert_eq!((fetch.attempts, fetch.ok), (2, true));
    // The run is recorded as it ended: all well.
    let (code, stdout, stderr) = stepwise(
        dir.path(),
        &["history", "--state-dir", ".stepwise", "--json"],
    );
    assert_eq!(code, 0, "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["runs"][0]["result"], "ok", "{doc}");
    assert_eq!(doc["runs"][0]["exit_code"], 0);

    // A step whose last call failed still fails the run.
    let mut run = Run::open(&state).unwrap();
    run.forget("fetch").unwrap();
    assert!(run.step("fetch", || Err::<u32, _>("down")).is_err());
    assert_eq!(run.finish().unwrap().exit_code(), 1);
}
