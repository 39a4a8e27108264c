//! Steps run as jobs of a real Slurm cluster: `scripts/slurm-up.sh` starts
//! one on localhost. Every test here is `#[ignore]`d, so a plain `cargo
//! test` reports them as ignored, never as passed; `.ci/run` starts the
//! cluster and runs them with `--include-ignored`. Run by hand, a test
//! without a cluster to talk to fails, saying how to start one.
//!
//! Each step proves it ran by appending its name to `ran`, and the journal's
//! `submit` records say how many jobs were submitted, so "submitted once" is
//! checked, not assumed.

mod common;
use common::*;

use std::process::Command;
use std::time::{Duration, Instant};

/// Fails the test, saying how to start one, unless a Slurm cluster answers.
#[track_caller]
fn need_slurm() {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("sbatch").is_file()));
    // Installed is not running: a machine that rebooted has `sbatch` but no
    // controller to answer it.
    let answers = found
        && Command::new("sinfo")
            .arg("--noheader")
            .output()
            .is_ok_and(|o| o.status.success());
    if !answers {
        let why = if found {
            "sbatch is installed but no Slurm controller answers `sinfo`"
        } else {
            "sbatch not found"
        };
        panic!(
            "{why}: `sudo scripts/slurm-up.sh` starts a one-node Slurm cluster to run this test against"
        );
    }
}

/// `[pipeline]` for the tests: Slurm, asked about its jobs often.
const SLURM: &str =
    "[pipeline]\nexecutor = \"slurm\"\n[pipeline.slurm]\npoll_interval = \"200ms\"\n\n";

/// Every `submit` record of the journal, as `(step, job id)`.
fn submissions(space: &Space) -> Vec<(String, String)> {
    journal_records(&space.journal())
        .into_iter()
        .filter(|r| r["event"] == "submit")
        .map(|r| {
            (
                r["step"].as_str().unwrap().to_string(),
                r["job"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The `finish` records of one step.
fn finishes(space: &Space, step: &str) -> Vec<serde_json::Value> {
    journal_records(&space.journal())
        .into_iter()
        .filter(|r| r["event"] == "finish" && r["step"] == step)
        .collect()
}

/// The jobs among `ids` that Slurm still has queued, running or finishing.
fn in_queue(ids: &[String]) -> Vec<String> {
    let out = Command::new("squeue")
        .args([
            "--noheader",
            "--format=%i|%T",
            &format!("--jobs={}", ids.join(",")),
        ])
        .output()
        .expect("squeue runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Waits up to `limit` for `cond`.
#[track_caller]
fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "gave up after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs a Slurm cluster: sudo scripts/slurm-up.sh, then cargo test -- --include-ignored"]
fn a_three_step_pipeline_runs_through_sbatch() {
    need_slurm();
    let space = Space::with(
        r#"[pipeline]
executor = "slurm"
shell = ["bash", "-eu", "-c"]
env = { GREETING = "hello" }
[pipeline.slurm]
poll_interval = "200ms"

[[step]]
name = "fetch"
run = "echo fetch >> ran; echo $GREETING > fetched"

[[step]]
name = "count"
dir = "work"
env = { WHAT = "words" }
run = "echo count >> ../ran; env | grep -E '^(STEPWISE_|GREETING=|WHAT=)' | sort > env.txt; pwd > pwd.txt; echo counted"
[step.slurm]
cpus = 2
mem = "100M"
time = "5m"

[[step]]
name = "report"
run = "echo report >> ran; test \"$(cat fetched)\" = hello"

[[step]]
name = "index"
executor = "local"
run = "echo index >> ran; echo ${STEPWISE_EXECUTOR:-here} > index-executor"
"#,
    );
    std::fs::create_dir(space.join("work")).unwrap();
    space.run(&["run"]).success();
    assert_eq!(space.ran(), ["fetch", "count", "report", "index"]);

    let jobs = submissions(&space);
    let steps: Vec<&str> = jobs.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        steps,
        ["fetch", "count", "report"],
        "one job per Slurm step"
    );
    let mut ids: Vec<&str> = jobs.iter().map(|(_, j)| j.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 3, "three different jobs: {jobs:?}");

    // The job ran in the step's dir, with the step's environment.
    let state_dir = space.path().canonicalize().unwrap().join(".stepwise");
    let env = space.read("work/env.txt");
    for line in [
        "GREETING=hello".to_string(),
        "WHAT=words".to_string(),
        "STEPWISE_STEP=count".to_string(),
        "STEPWISE_ATTEMPT=1".to_string(),
        "STEPWISE_RUN=1".to_string(),
        "STEPWISE_EXECUTOR=slurm".to_string(),
    ] {
        assert!(env.lines().any(|l| l == line), "{line} missing from\n{env}");
    }
    let state_line = env
        .lines()
        .find(|l| l.starts_with("STEPWISE_STATE_DIR="))
        .expect("STEPWISE_STATE_DIR is set");
    assert_eq!(
        std::path::Path::new(&state_line["STEPWISE_STATE_DIR=".len()..])
            .canonicalize()
            .unwrap(),
        state_dir
    );
    assert_eq!(
        std::path::Path::new(space.read("work/pwd.txt").trim())
            .canonicalize()
            .unwrap(),
        space.join("work").canonicalize().unwrap()
    );
    assert_eq!(
        space.read("index-executor").trim(),
        "here",
        "a local step stays local"
    );

    // Its output is the attempt's log; Slurm knows the job by the step's name.
    space.run(&["log", "count"]).success().stdout_has("counted");
    let name = Command::new("squeue")
        .args([
            "--noheader",
            "--states=all",
            "--format=%j",
            &format!("--jobs={}", jobs[1].1),
        ])
        .output()
        .unwrap();
    let folder = space
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    assert_eq!(
        String::from_utf8_lossy(&name.stdout).trim(),
        format!("stepwise:{folder}:count")
    );
    let status = space.run(&["status", "--json"]).json();
    assert_eq!(
        status["steps"][1]["last_attempt"]["job"],
        jobs[1].1.as_str()
    );
    assert!(status["steps"][3]["last_attempt"].get("job").is_none());
    space
        .run(&["status"])
        .success()
        .stdout_has("JOB")
        .stdout_has(&format!(" {} ", jobs[1].1));
    space
        .run(&["report", "-o", "-"])
        .success()
        .stdout_has(&format!("(Slurm job {})", jobs[2].1));

    // Done is done, wherever it ran.
    space
        .run(&["run"])
        .success()
        .stderr_has("4 done, 0 remaining");
    assert_eq!(space.ran().len(), 4);
}

#[test]
#[ignore = "needs a Slurm cluster: sudo scripts/slurm-up.sh, then cargo test -- --include-ignored"]
fn a_failing_job_is_recorded_with_its_exit_code_and_its_dependents_do_not_run() {
    need_slurm();
    let space = Space::with(&format!(
        "{SLURM}\
         [[step]]\nname = \"a\"\nrun = \"echo a >> ran\"\n\n\
         [[step]]\nname = \"b\"\nrun = \"echo b >> ran; echo broken >&2; exit 3\"\nretries = 1\nretry_delay = \"100ms\"\n\n\
         [[step]]\nname = \"c\"\nrun = \"echo c >> ran\"\n\n\
         [[step]]\nname = \"d\"\nrun = \"echo d >> ran\"\nafter = [\"a\"]\n"
    ));
    let out = space.run(&["run", "--keep-going", "--events", "json"]);
    let submitted: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "step_submitted")
        .collect();
    assert_eq!(submitted.len(), 4, "a, b twice, d: {}", out.stdout);
    assert!(
        submitted
            .iter()
            .all(|e| e["job"].as_str().is_some_and(|j| !j.is_empty()))
    );
    out.code(1)
        .stderr_has("FAILED b (exit code 3")
        .stderr_has("  | broken")
        .stderr_has("retry  b")
        .stderr_has("not run: c (needs b");
    assert_eq!(space.ran_count("b"), 2, "retried once");
    assert_eq!(space.ran_count("c"), 0, "c needs b, which failed");
    assert_eq!(
        space.ran_count("d"),
        1,
        "--keep-going runs what does not need b"
    );
    let b = finishes(&space, "b");
    assert_eq!(b.len(), 2);
    for f in &b {
        assert_eq!(f["ok"], false);
        assert_eq!(f["exit_code"], 3);
    }
    let b_jobs: Vec<String> = submissions(&space)
        .into_iter()
        .filter(|(s, _)| s == "b")
        .map(|(_, j)| j)
        .collect();
    assert_eq!(b_jobs.len(), 2, "each attempt is a job of its own");
    assert_ne!(b_jobs[0], b_jobs[1]);
    let status = space.run(&["status", "--json"]).json();
    assert_eq!(status["steps"][1]["last_attempt"]["exit_code"], 3);
    assert_eq!(status["steps"][1]["last_attempt"]["outcome"], "exit code 3");
}

#[test]
#[ignore = "needs a Slurm cluster: sudo scripts/slurm-up.sh, then cargo test -- --include-ignored"]
fn a_job_past_its_time_is_recorded_as_a_timeout() {
    need_slurm();
    // `time` is Slurm's own limit, in whole minutes, so the shortest is a
    // minute (and Slurm checks limits every half minute or so); `timeout`
    // is stepwise's, as precise as for a local step.
    let space = Space::with(&format!(
        "{SLURM}\
         [[step]]\nname = \"slurm-limit\"\nrun = \"echo slurm-limit >> ran; sleep 600\"\nafter = []\n[step.slurm]\ntime = \"1m\"\n\n\
         [[step]]\nname = \"own-limit\"\nrun = \"echo own-limit >> ran; sleep 600\"\nafter = []\ntimeout = \"2s\"\n"
    ));
    let started = Instant::now();
    let out = space.run(&["run"]);
    out.code(1)
        .stderr_has("FAILED slurm-limit (timed out")
        .stderr_has("FAILED own-limit (timed out");
    assert!(
        started.elapsed() < Duration::from_secs(170),
        "{:?}",
        started.elapsed()
    );
    for step in ["slurm-limit", "own-limit"] {
        let f = finishes(&space, step);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0]["reason"], "timeout", "{step}: {}", f[0]);
    }
    space
        .run(&["log", "slurm-limit"])
        .success()
        .stdout_has("DUE TO TIME LIMIT");
    let ids: Vec<String> = submissions(&space).into_iter().map(|(_, j)| j).collect();
    wait_for(
        "the jobs to leave the queue",
        Duration::from_secs(20),
        || in_queue(&ids).is_empty(),
    );
}

#[test]
#[ignore = "needs a Slurm cluster: sudo scripts/slurm-up.sh, then cargo test -- --include-ignored"]
fn a_killed_runner_resumes_without_submitting_any_job_twice() {
    need_slurm();
    let mut toml = format!("{SLURM}[[step]]\nname = \"prep\"\nrun = \"echo prep >> ran\"\n\n");
    for i in 1..=3 {
        toml += &format!(
            "[[step]]\nname = \"work{i}\"\nrun = \"echo work{i} >> started; sleep 3; echo work{i} >> ran\"\nafter = [\"prep\"]\n\n"
        );
    }
    toml += "[[step]]\nname = \"merge\"\nrun = \"echo merge >> ran\"\nafter = [\"work1\", \"work2\", \"work3\"]\n";
    let space = Space::with(&toml);
    // -j counts jobs in flight, and defaults to this machine's CPUs.
    let mut runner = space.spawn(&["run", "-j", "8"]);
    // Running, not just queued: on this one-node cluster their processes
    // are on this machine, where the next run cleans up what a dead runner
    // left, and must leave Slurm's alone.
    wait_for(
        "the three work jobs to run",
        Duration::from_secs(30),
        || submissions(&space).len() == 4 && space.read("started").lines().count() == 3,
    );
    runner.kill9();
    let in_flight: Vec<String> = submissions(&space)[1..]
        .iter()
        .map(|(_, j)| j.clone())
        .collect();
    assert_eq!(
        in_queue(&in_flight).len(),
        3,
        "the jobs outlive their runner"
    );
    assert!(
        space.ran().iter().all(|s| !s.starts_with("work")),
        "not finished yet"
    );

    let out = space.run(&["run", "-j", "8"]);
    out.success();
    for i in 1..=3 {
        out.stderr_has(&format!("attach work{i} (attempt 1, Slurm job"));
    }
    for step in ["prep", "work1", "work2", "work3", "merge"] {
        assert_eq!(
            space.ran_count(step),
            1,
            "{step} ran once: {:?}",
            space.ran()
        );
        assert_eq!(finishes(&space, step).len(), 1, "{step} recorded once");
    }
    let jobs = submissions(&space);
    assert_eq!(
        jobs.len(),
        5,
        "one job per step, none submitted twice: {jobs:?}"
    );
    let mut ids: Vec<&String> = jobs.iter().map(|(_, j)| j).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5);
    // The work jobs' outcomes belong to the run that submitted them.
    for f in finishes(&space, "work1") {
        assert_eq!(f["run"], 1);
    }
    space
        .run(&["run"])
        .success()
        .stderr_has("5 done, 0 remaining");
}

/// The runner died after `sbatch` submitted the job but before the job id
/// reached the journal: the next run finds the job by its batch script.
#[test]
#[ignore = "needs a Slurm cluster: sudo scripts/slurm-up.sh, then cargo test -- --include-ignored"]
fn a_job_whose_id_never_reached_the_journal_is_found_by_its_script() {
    need_slurm();
    let space = Space::with(&format!(
        "{SLURM}[[step]]\nname = \"a\"\nrun = \"echo a >> ran\"\n"
    ));
    let dir = space.path().canonicalize().unwrap();
    let state = dir.join(".stepwise");
    space.write(
        ".stepwise/journal.jsonl",
        "{\"v\":1,\"event\":\"run\",\"run\":1,\"at\":1795975940540,\"pid\":999999}\n\
         {\"v\":1,\"event\":\"start\",\"run\":1,\"step\":\"a\",\"attempt\":1,\"at\":1795975940541}\n",
    );
    let status = state.join("slurm/a.1.status");
    let script = state.join("slurm/a.1.sh");
    space.write(
        ".stepwise/slurm/a.1.sh",
        &format!(
            "#!/bin/sh\nsleep 2\necho a >> {ran}\nprintf '0\\n' > {status}.tmp && mv {status}.tmp {status}\n",
            ran = dir.join("ran").display(),
            status = status.display()
        ),
    );
    let submitted = Command::new("sbatch")
        .args(["--parsable", "--output=/dev/null"])
        .arg(&script)
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(submitted.status.success(), "{submitted:?}");
    let job = String::from_utf8_lossy(&submitted.stdout)
        .trim()
        .to_string();

    space
        .run(&["run"])
        .success()
        .stderr_has(&format!("attach a (attempt 1, Slurm job {job}) still"));
    assert_eq!(space.ran(), ["a"], "the job ran, and nothing else did");
    assert_eq!(submissions(&space), [("a".to_string(), job)]);
    assert_eq!(finishes(&space, "a")[0]["ok"], true);
}

#[test]
#[ignore = "needs a Slurm cluster: sudo scripts/slurm-up.sh, then cargo test -- --include-ignored"]
fn ctrl_c_cancels_queued_and_running_jobs() {
    need_slurm();
    let mut toml = String::from(SLURM);
    for i in 1..=3 {
        toml += &format!(
            "[[step]]\nname = \"run{i}\"\nrun = \"echo run{i} >> ran; sleep 120\"\nafter = []\n\n"
        );
    }
    // Held: it stays queued until released, which nobody does.
    toml += "[[step]]\nname = \"queued\"\nrun = \"echo queued >> ran\"\nafter = []\n[step.slurm]\nsbatch_args = [\"--hold\"]\n";
    let space = Space::with(&toml);
    let mut runner = space.spawn(&["run", "-j", "8"]);
    wait_for("the jobs to be submitted", Duration::from_secs(30), || {
        submissions(&space).len() == 4
    });
    wait_for("three jobs to run", Duration::from_secs(30), || {
        space.ran().len() == 3
    });
    let ids: Vec<String> = submissions(&space).into_iter().map(|(_, j)| j).collect();
    let queue = in_queue(&ids);
    assert_eq!(
        queue.iter().filter(|l| l.ends_with("|RUNNING")).count(),
        3,
        "{queue:?}"
    );
    assert_eq!(
        queue.iter().filter(|l| l.ends_with("|PENDING")).count(),
        1,
        "{queue:?}"
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(runner.pid() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    runner.wait().code(130);
    for step in ["run1", "run2", "run3", "queued"] {
        let f = finishes(&space, step);
        assert_eq!(f.len(), 1, "{step}");
        assert_eq!(f[0]["reason"], "interrupted", "{step}: {}", f[0]);
    }
    wait_for(
        "squeue to show none of them",
        Duration::from_secs(20),
        || in_queue(&ids).is_empty(),
    );
    // Interrupted attempts run again next time.
    let plan = space.plan_json(&[]);
    assert_eq!(plan["remaining"], 4);
}

#[test]
#[ignore = "needs a Slurm cluster: sudo scripts/slurm-up.sh, then cargo test -- --include-ignored"]
fn fifty_independent_steps_run_at_once_and_each_is_recorded_once() {
    need_slurm();
    let mut toml = String::from(SLURM);
    for i in 0..50 {
        toml +=
            &format!("[[step]]\nname = \"s{i:02}\"\nrun = \"echo s{i:02} >> ran\"\nafter = []\n\n");
    }
    let space = Space::with(&toml);
    space.run(&["run", "-j", "50"]).success();
    let mut ran = space.ran();
    ran.sort();
    let expected: Vec<String> = (0..50).map(|i| format!("s{i:02}")).collect();
    assert_eq!(ran, expected, "each step ran exactly once");
    let jobs = submissions(&space);
    assert_eq!(jobs.len(), 50);
    let mut ids: Vec<&String> = jobs.iter().map(|(_, j)| j).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50, "50 different jobs");
    for step in &expected {
        let f = finishes(&space, step);
        assert_eq!(f.len(), 1, "{step} recorded once");
        assert_eq!(f[0]["ok"], true);
    }
}

#[test]
#[ignore = "needs a Slurm cluster: sudo scripts/slurm-up.sh, then cargo test -- --include-ignored"]
fn a_job_slurm_refuses_is_an_error_before_anything_is_submitted() {
    need_slurm();
    let space = Space::with(&format!(
        "{SLURM}[[step]]\nname = \"a\"\nrun = \"echo a >> ran\"\n[step.slurm]\npartition = \"no-such-partition\"\n"
    ));
    space
        .run(&["run"])
        .code(2)
        .stderr_has("cannot submit to Slurm: `sbatch`")
        .stderr_has("partition")
        .stderr_has("help: check the [slurm] settings of step `a`");
    assert!(space.ran().is_empty());
    assert!(submissions(&space).is_empty());
}

/// The state dir must be shared with the nodes. Here it is hidden from the
/// job: the runner sees the pipeline's folder through a private tmpfs mount
/// (its own mount namespace), while the job, started by slurmd outside it,
/// sees the empty folder underneath.
#[test]
#[ignore = "needs a Slurm cluster: sudo scripts/slurm-up.sh, then cargo test -- --include-ignored"]
fn a_state_dir_the_jobs_cannot_see_is_refused_before_any_step_is_submitted() {
    need_slurm();
    let space = Space::new();
    let hidden = space.join("pipeline");
    std::fs::create_dir(&hidden).unwrap();
    space.write(
        "stepwise.toml",
        &format!("{SLURM}[[step]]\nname = \"a\"\nrun = \"echo a >> ran\"\n"),
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs tmpfs \"$1\" || exit 99; cp \"$2\" \"$1\"/ && cd \"$1\" && exec \"$3\" run")
        .arg("sh")
        .arg(&hidden)
        .arg(space.join("stepwise.toml"))
        .arg(BIN)
        .output()
        .expect("unshare runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 99: the tmpfs could not be mounted; "unshare:": no namespace at all.
    assert!(
        out.status.code() != Some(99) && !stderr.starts_with("unshare:"),
        "cannot make a private mount here (needs root): {out:?}"
    );
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("a Slurm job cannot write to the state dir"),
        "{stderr}"
    );
    assert!(stderr.contains("shared"), "{stderr}");
    assert!(!hidden.join("ran").exists(), "the step never ran");
}

#[test]
#[ignore = "needs a Slurm cluster: sudo scripts/slurm-up.sh, then cargo test -- --include-ignored"]
fn a_secret_reaches_only_the_slurm_job_of_the_step_that_declares_it() {
    need_slurm();
    let secret = "tok-slurm-7c1d";
    let space = Space::with(&format!(
        "{SLURM}[[step]]\nname = \"a\"\nrun = \"test \\\"$TOKEN\\\" = {secret} && echo a >> ran\"\nsecret_env = [\"TOKEN\"]\n\n[[step]]\nname = \"b\"\nrun = \"test -z \\\"${{TOKEN:-}}\\\" && echo b >> ran\"\n"
    ));
    let mut cmd = space.command(&["run"]);
    cmd.env("TOKEN", secret);
    space.run_command(cmd).success();
    assert_eq!(space.ran(), ["a", "b"], "a's job got TOKEN, b's did not");
    assert_eq!(submissions(&space).len(), 2, "both ran on Slurm");
    for entry in std::fs::read_dir(space.join(".stepwise/slurm")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read(&path).unwrap();
        assert!(
            !String::from_utf8_lossy(&text).contains(secret),
            "{} holds the secret",
            path.display()
        );
    }
    assert!(!space.journal().contains(secret));
}

#[test]
#[ignore = "needs a Slurm cluster: sudo scripts/slurm-up.sh, then cargo test -- --include-ignored"]
fn a_job_that_ended_while_no_runner_watched_is_recorded_with_its_own_duration() {
    need_slurm();
    let space = Space::with(&format!(
        "{SLURM}[[step]]\nname = \"work\"\nrun = \"echo work >> started; sleep 1; echo work >> ran\"\n"
    ));
    let submitted = Instant::now();
    let mut runner = space.spawn(&["run"]);
    wait_for("the job to run", Duration::from_secs(30), || {
        !space.read("started").is_empty()
    });
    runner.kill9();
    wait_for("the job to end", Duration::from_secs(30), || {
        !space.read("ran").is_empty()
    });
    // Long after it ended, a run notices.
    std::thread::sleep(Duration::from_secs(4));
    let noticed = submitted.elapsed();
    space
        .run(&["run"])
        .success()
        .stderr_has("ended while no runner watched it");
    let finish = &finishes(&space, "work")[0];
    let took = finish["duration_ms"].as_u64().unwrap();
    assert!(
        took + 3000 < noticed.as_millis() as u64,
        "recorded {took} ms: until its status was written, not until a run noticed ({noticed:?})"
    );
}
