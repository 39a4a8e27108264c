//! Trustworthy "done" (issue 3), end to end: a step is skipped only while its
//! recorded success still describes it (command, shell, dir, env, the content
//! of its inputs, what its dependencies produced) and its outputs exist; it
//! runs again when any of that changed, and `plan`/`why` say exactly why.
//! Also: early cutoff, outputs removed after a failure, missing inputs,
//! `forget --downstream`, imports stamped with fingerprints, the stat cache
//! as a pure optimisation, and outputs refused outside the pipeline folder.

mod common;
use common::*;

use serde_json::{Value, json};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;
use stepwise::fingerprint::Digest;

// --- Helpers -----------------------------------------------------------------

/// The entry of step `name` in a `plan --json` document.
#[track_caller]
fn step_of<'a>(plan: &'a Value, name: &str) -> &'a Value {
    plan["steps"]
        .as_array()
        .expect("`steps` is a list")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name} in the plan: {plan}"))
}

/// `(action, state)` of step `name` in a `plan --json` document.
#[track_caller]
fn decision(plan: &Value, name: &str) -> (String, String) {
    let s = step_of(plan, name);
    (
        s["action"].as_str().expect("an action").to_string(),
        s["state"].as_str().expect("a state").to_string(),
    )
}

/// The structured reasons of step `name`.
#[track_caller]
fn reasons(plan: &Value, name: &str) -> Value {
    step_of(plan, name)["reasons"].clone()
}

/// The structured warnings of step `name`.
#[track_caller]
fn warnings(plan: &Value, name: &str) -> Value {
    step_of(plan, name)["warnings"].clone()
}

fn skip_done() -> (String, String) {
    ("skip".into(), "done".into())
}

fn run_stale() -> (String, String) {
    ("run".into(), "stale".into())
}

/// Sets the mtime of `rel` to `secs` seconds away from its current one.
fn shift_mtime(space: &Space, rel: &str, secs: i64) {
    let path = space.join(rel);
    let old = std::fs::metadata(&path).unwrap().modified().unwrap();
    let new = if secs >= 0 {
        old + Duration::from_secs(secs as u64)
    } else {
        old - Duration::from_secs(secs.unsigned_abs())
    };
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(new)
        .unwrap();
    assert_ne!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        old,
        "the mtime of {rel} changed"
    );
}

/// Replaces `rel` with `contents` and moves its mtime away from the old one,
/// so the change is visible to stat even within one timestamp tick.
fn rewrite(space: &Space, rel: &str, contents: &str) {
    space.write(rel, contents);
    shift_mtime(space, rel, -100);
}

/// The journal's `finish` records of step `name`.
fn finishes(space: &Space, name: &str) -> Vec<Value> {
    journal_records(&space.journal())
        .into_iter()
        .filter(|r| r["event"] == "finish" && r["step"] == name)
        .collect()
}

/// A stat cache in the format stepwise writes (`.stepwise/stat-cache`): one
/// line per file, `digest size mtime_ns ctime_ns inode device path`, and a
/// last line with the checksum of everything before it. Each entry carries
/// the file's real stat and the digest given with it, true or not.
fn stat_cache_text(space: &Space, entries: &[(&str, Digest)]) -> String {
    let root = std::fs::canonicalize(space.path()).unwrap();
    let mut text = String::from("stepwise stat-cache v2\n");
    for (rel, digest) in entries {
        let path: PathBuf = root.join(rel);
        let m = std::fs::metadata(&path).unwrap();
        let mtime = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
        let ctime = i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec());
        text.push_str(&format!(
            "{digest} {} {mtime} {ctime} {} {} {}\n",
            m.size(),
            m.ino(),
            m.dev(),
            path.display()
        ));
    }
    let checksum = Digest::checksum(text.as_bytes());
    text.push_str(&format!("checksum {checksum}\n"));
    text
}

/// The content digest of a file, as stepwise computes it.
fn digest_of(space: &Space, rel: &str) -> Digest {
    Digest::of(&std::fs::read(space.join(rel)).unwrap())
}

const STAT_CACHE: &str = ".stepwise/stat-cache";

// --- 1. The command ------------------------------------------------------------

/// a -> b -> c, and s, a sibling of b that also needs a. `{b}` is b's command.
const FAMILY: &str = r#"
[[step]]
name = "a"
run = "echo a >> ran"

[[step]]
name = "b"
run = "{b}"

[[step]]
name = "c"
run = "echo c >> ran"

[[step]]
name = "s"
run = "echo s >> ran"
after = ["a"]
"#;

fn family(b_command: &str) -> String {
    FAMILY.replace("{b}", b_command)
}

#[test]
fn changing_a_command_runs_that_step_and_its_dependents_but_not_its_siblings() {
    let space = Space::with(&family("echo b >> ran"));
    space.run(&["run", "-j1"]).success();
    assert_eq!(space.ran(), ["a", "b", "c", "s"]);

    space.write("stepwise.toml", &family("echo b >> ran; true"));
    let plan = space.plan_json(&[]);
    assert_eq!(plan_remaining(&plan), ["b", "c"]);
    assert_eq!(decision(&plan, "a"), skip_done());
    assert_eq!(decision(&plan, "s"), skip_done(), "a sibling is untouched");
    assert_eq!(decision(&plan, "b"), run_stale());
    assert_eq!(reasons(&plan, "b"), json!([{"kind": "command changed"}]));
    assert_eq!(decision(&plan, "c"), run_stale());
    assert_eq!(
        reasons(&plan, "c"),
        json!([{"kind": "dependency changed", "step": "b"}]),
        "c's own definition is the same; what it needs changed"
    );
    space
        .run(&["plan"])
        .success()
        .stdout_has("Resume plan: 2 done, 2 remaining")
        .stdout_has("command changed");

    space
        .run(&["run", "-j1"])
        .success()
        .stderr_has("Resume plan: 2 done, 2 remaining");
    assert_eq!(space.ran(), ["a", "b", "c", "s", "b", "c"]);
    assert_eq!(plan_remaining(&space.plan_json(&[])), Vec::<String>::new());
}

#[test]
fn by_name_ignores_a_changed_command_in_plan_and_run() {
    let space = Space::with(&family("echo b >> ran"));
    space.run(&["run"]).success();
    space.write("stepwise.toml", &family("echo B >> ran"));

    let by_name = space.plan_json(&["--by-name"]);
    assert_eq!(by_name["done"], 4);
    assert_eq!(plan_remaining(&by_name), Vec::<String>::new());
    assert_eq!(decision(&by_name, "b"), skip_done());
    space
        .run(&["plan", "--by-name"])
        .success()
        .stdout_has("Resume plan: 4 done, 0 remaining");

    space
        .run(&["run", "--by-name"])
        .success()
        .stderr_has("Resume plan: 4 done, 0 remaining");
    assert_eq!(space.ran().len(), 4, "nothing ran: {:?}", space.ran());

    // Without --by-name the change still counts: run --by-name recorded nothing.
    assert_eq!(plan_remaining(&space.plan_json(&[])), ["b", "c"]);
    space.run(&["run"]).success();
    assert_eq!(space.ran_count("B"), 1);
    assert_eq!(space.ran_count("c"), 2);
    assert_eq!(space.ran_count("a") + space.ran_count("s"), 2);
}

// --- 2. Input content, not mtime ---------------------------------------------

const READS_DATA: &str = r#"
[[step]]
name = "a"
run = "echo a >> ran; cat data.txt > /dev/null"
inputs = ["data.txt"]

[[step]]
name = "b"
run = "echo b >> ran"
after = []
"#;

#[test]
fn rewriting_an_input_with_the_same_bytes_runs_nothing() {
    let space = Space::with(READS_DATA);
    space.write("data.txt", "hello\n");
    space.run(&["run"]).success();
    let before = space.plan_json(&[]);

    // Same bytes, new mtime, new ctime; a copy would look the same.
    rewrite(&space, "data.txt", "hello\n");
    let after = space.plan_json(&[]);
    assert_eq!(after, before, "only the mtime changed");
    assert_eq!(decision(&after, "a"), skip_done());

    // Only the mtime moves (a `touch`).
    shift_mtime(&space, "data.txt", 3600);
    assert_eq!(space.plan_json(&[]), before);

    space.run(&["run"]).success().stderr_has("nothing to do");
    assert_eq!(space.ran().len(), 2, "each ran once: {:?}", space.ran());
}

#[test]
fn changing_one_byte_of_an_input_runs_the_step_and_why_names_the_input() {
    let space = Space::with(READS_DATA);
    space.write("data.txt", "hello\n");
    space.run(&["run"]).success();

    // Same size, and the mtime put back where it was: only the content tells.
    let mtime = std::fs::metadata(space.join("data.txt"))
        .unwrap()
        .modified()
        .unwrap();
    space.write("data.txt", "hellO\n");
    std::fs::File::options()
        .write(true)
        .open(space.join("data.txt"))
        .unwrap()
        .set_modified(mtime)
        .unwrap();

    let plan = space.plan_json(&[]);
    assert_eq!(plan_remaining(&plan), ["a"]);
    assert_eq!(decision(&plan, "a"), run_stale());
    assert_eq!(
        reasons(&plan, "a"),
        json!([{"kind": "input changed", "path": "data.txt"}])
    );
    assert_eq!(step_of(&plan, "a")["reason"], "input changed: data.txt");
    assert_eq!(decision(&plan, "b"), skip_done());

    space
        .run(&["why", "a"])
        .success()
        .stdout_has("a: will run (stale)")
        .stdout_has("input changed: data.txt");

    space.run(&["run"]).success();
    assert_eq!((space.ran_count("a"), space.ran_count("b")), (2, 1));
    assert_eq!(plan_remaining(&space.plan_json(&[])), Vec::<String>::new());
}

// --- 3. Every component of the fingerprint ------------------------------------

const GLOB: &str = r#"
[[step]]
name = "a"
run = "echo a >> ran"
inputs = ["data/*.csv"]
"#;

#[test]
fn a_file_added_to_or_removed_from_an_input_glob_runs_the_step() {
    let space = Space::with(GLOB);
    space.write("data/one.csv", "1\n");
    space.write("data/two.csv", "2\n");
    space.run(&["run"]).success();

    // Not matching the glob: no change.
    space.write("data/notes.txt", "x\n");
    space.write("other.csv", "x\n");
    assert_eq!(decision(&space.plan_json(&[]), "a"), skip_done());

    space.write("data/three.csv", "3\n");
    let plan = space.plan_json(&[]);
    assert_eq!(decision(&plan, "a"), run_stale());
    assert_eq!(
        reasons(&plan, "a"),
        json!([{"kind": "input added", "path": "data/three.csv"}])
    );
    space.run(&["run"]).success();
    assert_eq!(space.ran(), ["a", "a"]);

    std::fs::remove_file(space.join("data/one.csv")).unwrap();
    let plan = space.plan_json(&[]);
    assert_eq!(
        reasons(&plan, "a"),
        json!([{"kind": "input removed", "path": "data/one.csv"}])
    );
    space
        .run(&["plan"])
        .success()
        .stdout_has("input removed: data/one.csv");
    space.run(&["run"]).success();
    assert_eq!(space.ran(), ["a", "a", "a"]);
}

#[test]
fn a_changed_file_inside_an_input_folder_runs_the_step() {
    let space =
        Space::with("[[step]]\nname = \"a\"\nrun = \"echo a >> ran\"\ninputs = [\"conf\"]\n");
    space.write("conf/x/deep.ini", "k=1\n");
    space.run(&["run"]).success();
    assert_eq!(decision(&space.plan_json(&[]), "a"), skip_done());

    rewrite(&space, "conf/x/deep.ini", "k=2\n");
    let plan = space.plan_json(&[]);
    assert_eq!(
        reasons(&plan, "a"),
        json!([{"kind": "input changed", "path": "conf"}])
    );
}

#[test]
fn a_named_pipe_or_a_socket_in_an_input_folder_counts_by_its_kind_and_never_blocks() {
    // Opening a named pipe blocks until a writer comes; a socket cannot be
    // opened at all. Either in an input folder (git puts a socket in .git/)
    // or named as an input must not hang the plan nor fail the step.
    let space = Space::with(
        "[[step]]\nname = \"a\"\nrun = \"echo a >> ran\"\ninputs = [\"data\", \"data/pipe\"]\n",
    );
    space.write("data/a", "1\n");
    nix::unistd::mkfifo(&space.join("data/pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(space.join("data/sock")).unwrap();
    let t = std::time::Instant::now();
    let plan = space.plan_json(&[]);
    assert_eq!(warnings(&plan, "a"), json!([]), "the folder is there");
    space.run(&["run"]).success();
    assert!(
        t.elapsed() < std::time::Duration::from_secs(20),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(decision(&space.plan_json(&[]), "a"), skip_done());
    // The folder's regular content still counts.
    rewrite(&space, "data/a", "2\n");
    assert_eq!(
        reasons(&space.plan_json(&[]), "a"),
        json!([{"kind": "input changed", "path": "data"}])
    );
}

#[test]
fn an_input_pattern_that_matches_the_step_s_own_output_does_not_rerun_it() {
    // `*.csv` reads the data files, and the step writes summary.csv beside
    // them: its own output is not an input, or every success would be stale.
    let space = Space::with(
        "[[step]]\nname = \"sum\"\ninputs = [\"*.csv\"]\noutputs = [\"summary.csv\"]\nrun = \"cat a.csv b.csv > summary.csv; echo sum >> ran\"\n",
    );
    space.write("a.csv", "1\n");
    space.write("b.csv", "2\n");
    space.run(&["run"]).success();
    assert_eq!(decision(&space.plan_json(&[]), "sum"), skip_done());
    space.run(&["run"]).success().stderr_has("nothing to do");
    assert_eq!(space.ran(), ["sum"]);
    // A data file it does read still counts.
    rewrite(&space, "b.csv", "3\n");
    assert_eq!(
        reasons(&space.plan_json(&[]), "sum"),
        json!([{"kind": "input changed", "path": "b.csv"}])
    );
}

fn with_env(pipeline_env: &str, a_env: &str) -> String {
    format!(
        r#"
[pipeline]
env = {pipeline_env}

[[step]]
name = "a"
run = "echo a >> ran"
env = {a_env}

[[step]]
name = "b"
run = "echo b >> ran"
after = []

[[step]]
name = "o"
run = "echo o >> ran"
after = []
env = {{ P = "mine" }}
"#
    )
}

#[test]
fn a_changed_pipeline_env_value_runs_every_step_that_sees_it() {
    let space = Space::with(&with_env(r#"{ P = "1" }"#, r#"{ K = "1" }"#));
    space.run(&["run"]).success();

    space.write(
        "stepwise.toml",
        &with_env(r#"{ P = "2" }"#, r#"{ K = "1" }"#),
    );
    let plan = space.plan_json(&[]);
    for step in ["a", "b"] {
        assert_eq!(decision(&plan, step), run_stale(), "{step}");
        assert_eq!(
            reasons(&plan, step),
            json!([{"kind": "env changed", "key": "P"}])
        );
    }
    assert_eq!(
        decision(&plan, "o"),
        skip_done(),
        "o sets P itself: the pipeline's value never reaches it"
    );
    space.run(&["plan"]).success().stdout_has("env changed: P");
}

#[test]
fn a_changed_or_added_step_env_key_runs_only_that_step() {
    let space = Space::with(&with_env(r#"{ P = "1" }"#, r#"{ K = "1" }"#));
    space.run(&["run"]).success();

    space.write(
        "stepwise.toml",
        &with_env(r#"{ P = "1" }"#, r#"{ K = "2" }"#),
    );
    let plan = space.plan_json(&[]);
    assert_eq!(plan_remaining(&plan), ["a"]);
    assert_eq!(
        reasons(&plan, "a"),
        json!([{"kind": "env changed", "key": "K"}])
    );
    space.run(&["run"]).success();
    assert_eq!(space.ran_count("a"), 2);

    space.write(
        "stepwise.toml",
        &with_env(r#"{ P = "1" }"#, r#"{ K = "2", NEW = "x" }"#),
    );
    let plan = space.plan_json(&[]);
    assert_eq!(plan_remaining(&plan), ["a"]);
    assert_eq!(
        reasons(&plan, "a"),
        json!([{"kind": "env changed", "key": "NEW"}])
    );
    space.run(&["run"]).success();
    assert_eq!(space.ran_count("a"), 3);
    assert_eq!(space.ran_count("b") + space.ran_count("o"), 2);
}

fn with_shell(shell: &str) -> String {
    format!(
        "{shell}\n[[step]]\nname = \"a\"\nrun = \"echo a >> ran\"\n\n\
         [[step]]\nname = \"b\"\nrun = \"echo b >> ran\"\nafter = []\n"
    )
}

#[test]
fn a_changed_shell_runs_every_step_but_spelling_out_the_default_does_not() {
    let space = Space::with(&with_shell(""));
    space.run(&["run"]).success();

    space.write(
        "stepwise.toml",
        &with_shell("[pipeline]\nshell = [\"sh\", \"-c\"]"),
    );
    assert_eq!(
        plan_remaining(&space.plan_json(&[])),
        Vec::<String>::new(),
        "the default shell written out is the same shell"
    );

    space.write(
        "stepwise.toml",
        &with_shell("[pipeline]\nshell = [\"sh\", \"-e\", \"-c\"]"),
    );
    let plan = space.plan_json(&[]);
    assert_eq!(plan_remaining(&plan), ["a", "b"]);
    for step in ["a", "b"] {
        assert_eq!(reasons(&plan, step), json!([{"kind": "shell changed"}]));
    }
    space.run(&["run"]).success();
    assert_eq!(space.ran().len(), 4);
}

fn with_dir(dir: &str) -> String {
    format!(
        "[[step]]\nname = \"a\"\nrun = \"echo a >> ../ran\"\ndir = \"{dir}\"\n\n\
         [[step]]\nname = \"b\"\nrun = \"echo b >> ran\"\nafter = []\n"
    )
}

#[test]
fn a_changed_dir_runs_the_step() {
    let space = Space::with(&with_dir("w1"));
    std::fs::create_dir(space.join("w1")).unwrap();
    std::fs::create_dir(space.join("w2")).unwrap();
    space.run(&["run"]).success();

    space.write("stepwise.toml", &with_dir("w2"));
    let plan = space.plan_json(&[]);
    assert_eq!(plan_remaining(&plan), ["a"]);
    assert_eq!(reasons(&plan, "a"), json!([{"kind": "dir changed"}]));
    space.run(&["why", "a"]).success().stdout_has("dir changed");
    space.run(&["run"]).success();
    assert_eq!((space.ran_count("a"), space.ran_count("b")), (2, 1));
}

// --- 4. Outputs ----------------------------------------------------------------

/// a writes `a.out` from `in.txt`; b copies it to `b.out`.
const PRODUCER: &str = r#"
[[step]]
name = "a"
run = "echo a >> ran; cat in.txt > a.out"
inputs = ["in.txt"]
outputs = ["a.out"]

[[step]]
name = "b"
run = "echo b >> ran; cat a.out > b.out"
outputs = ["b.out"]
"#;

#[test]
fn a_deleted_output_runs_its_step() {
    let space = Space::with(PRODUCER);
    space.write("in.txt", "data\n");
    space.run(&["run"]).success();
    assert_eq!(space.read("b.out"), "data\n");

    std::fs::remove_file(space.join("b.out")).unwrap();
    let plan = space.plan_json(&[]);
    assert_eq!(plan_remaining(&plan), ["b"]);
    assert_eq!(decision(&plan, "a"), skip_done());
    assert_eq!(
        reasons(&plan, "b"),
        json!([{"kind": "output missing", "path": "b.out"}])
    );
    space
        .run(&["plan"])
        .success()
        .stdout_has("output missing: b.out");
    space.run(&["run"]).success();
    assert_eq!(space.ran(), ["a", "b", "b"]);
    assert!(space.exists("b.out"));
}

#[test]
fn a_deleted_upstream_output_reruns_it_and_the_same_bytes_spare_the_dependent() {
    let space = Space::with(PRODUCER);
    space.write("in.txt", "data\n");
    space.run(&["run"]).success();

    std::fs::remove_file(space.join("a.out")).unwrap();
    let plan = space.plan_json(&[]);
    assert_eq!(plan_remaining(&plan), ["a", "b"]);
    assert_eq!(
        reasons(&plan, "a"),
        json!([{"kind": "output missing", "path": "a.out"}])
    );
    let b = reasons(&plan, "b");
    assert!(
        b == json!([{"kind": "dependency changed", "step": "a"}])
            || b == json!([{"kind": "dependency will run", "step": "a"}]),
        "b runs because of a: {b}"
    );

    space
        .run(&["run"])
        .success()
        .stderr_has("skip   b (up to date");
    assert_eq!(space.ran(), ["a", "b", "a"], "a wrote the same a.out");
    assert_eq!(plan_remaining(&space.plan_json(&[])), Vec::<String>::new());
}

// --- 5. Failed attempts and their outputs ------------------------------------

fn failing(keep: bool) -> String {
    format!(
        r#"
[[step]]
name = "a"
run = "echo a >> ran; echo half > a.out; mkdir -p plots; echo p > plots/1.png; test -f fixed || exit 4; echo whole > a.out"
outputs = ["a.out", "plots/"]
keep_failed_outputs = {keep}

[[step]]
name = "b"
run = "echo b >> ran"
"#
    )
}

#[test]
fn a_failed_step_leaves_no_partial_output() {
    let space = Space::with(&failing(false));
    space.run(&["run"]).code(1).stderr_has("FAILED a");
    assert_eq!(space.ran(), ["a"], "the step did run and write");
    assert!(!space.exists("a.out"), "the half-written file is gone");
    assert!(!space.exists("plots"), "the declared folder is gone");

    space.write("fixed", "");
    space.run(&["run"]).success();
    assert_eq!(space.read("a.out"), "whole\n");
    assert_eq!(space.ran(), ["a", "a", "b"]);
}

#[test]
fn a_failure_after_a_success_removes_the_old_outputs_too() {
    let space = Space::with(&failing(false));
    space.write("fixed", "");
    space.run(&["run"]).success();
    assert_eq!(space.read("a.out"), "whole\n");

    // The next attempt (the command changed) fails halfway.
    space.write(
        "stepwise.toml",
        &failing(false).replace("test -f fixed", "test -f fixed2"),
    );
    space.run(&["run"]).code(1);
    assert!(!space.exists("a.out"));
    assert!(!space.exists("plots"));
}

#[test]
fn with_keep_failed_outputs_a_failed_step_keeps_them_and_they_do_not_pass_for_done() {
    let space = Space::with(&failing(true));
    space.run(&["run"]).code(1).stderr_has("FAILED a");
    assert_eq!(space.read("a.out"), "half\n", "kept for inspection");
    assert_eq!(space.read("plots/1.png"), "p\n");
    assert_eq!(
        decision(&space.plan_json(&[]), "a"),
        ("run".into(), "failed".into())
    );
}

#[test]
fn a_later_failed_attempt_that_kept_its_outputs_makes_an_earlier_success_stale() {
    // a succeeds, then (its input changed) fails keeping half-written
    // outputs; with the input back as it was, the old success matches the
    // fingerprint but the outputs on disk are not what it wrote.
    let toml = r#"
[[step]]
name = "a"
run = "echo a >> ran; cat in.txt > a.out; grep -q good in.txt"
inputs = ["in.txt"]
outputs = ["a.out"]
keep_failed_outputs = true
"#;
    let space = Space::with(toml);
    space.write("in.txt", "good\n");
    space.run(&["run"]).success();
    rewrite(&space, "in.txt", "bad!\n");
    space.run(&["run"]).code(1);
    assert_eq!(space.read("a.out"), "bad!\n");

    rewrite(&space, "in.txt", "good\n");
    let plan = space.plan_json(&[]);
    assert_eq!(plan_remaining(&plan), ["a"]);
    assert!(
        reasons(&plan, "a")
            .as_array()
            .unwrap()
            .contains(&json!({"kind": "outputs touched", "attempt": 2})),
        "{}",
        reasons(&plan, "a")
    );
    space.run(&["run"]).success();
    assert_eq!(space.read("a.out"), "good\n");
}

#[test]
fn a_step_that_exits_0_without_its_declared_output_fails() {
    let toml = r#"
[[step]]
name = "a"
run = "echo a >> ran; touch made.txt"
outputs = ["made.txt", "forgot.txt"]

[[step]]
name = "b"
run = "echo b >> ran"
"#;
    let space = Space::with(toml);
    space
        .run(&["run"])
        .code(1)
        .stderr_has("FAILED a")
        .stderr_has("did not create forgot.txt")
        .stderr_has("not run: b");
    assert_eq!(space.ran(), ["a"]);
    assert!(!space.exists("made.txt"), "what it did create is removed");

    let finish = finishes(&space, "a");
    assert_eq!(finish.len(), 1);
    assert_eq!(finish[0]["ok"], false);
    assert_eq!(finish[0]["reason"], "outputs missing");
    assert_eq!(finish[0]["missing"], json!(["forgot.txt"]));
    let plan = space.plan_json(&[]);
    assert_eq!(decision(&plan, "a"), ("run".into(), "failed".into()));
    assert!(
        step_of(&plan, "a")["reason"]
            .as_str()
            .unwrap()
            .contains("did not create forgot.txt")
    );
}

// --- 6. Early cutoff ------------------------------------------------------------

/// up writes `up.out` (its content set by `{write}`); mid and low copy along.
fn cutoff(write: &str) -> String {
    format!(
        r#"
[[step]]
name = "up"
run = "echo up >> ran; {write}"
outputs = ["up.out"]

[[step]]
name = "mid"
run = "echo mid >> ran; cat up.out > mid.out"
outputs = ["mid.out"]

[[step]]
name = "low"
run = "echo low >> ran"
"#
    )
}

#[test]
fn a_forgotten_upstream_that_writes_the_same_bytes_spares_everything_below() {
    let space = Space::with(&cutoff("echo 42 > up.out"));
    space.run(&["run"]).success();
    space.run(&["forget", "up"]).success();

    let plan = space.plan_json(&[]);
    assert_eq!(plan_remaining(&plan), ["up", "mid", "low"]);
    assert_eq!(
        reasons(&plan, "mid"),
        json!([{"kind": "dependency will run", "step": "up"}])
    );
    assert_eq!(
        reasons(&plan, "low"),
        json!([{"kind": "dependency will run", "step": "mid"}])
    );

    space
        .run(&["run"])
        .success()
        .stderr_has("skip   mid (up to date")
        .stderr_has("skip   low (up to date");
    assert_eq!(space.ran(), ["up", "mid", "low", "up"]);
    assert_eq!(plan_remaining(&space.plan_json(&[])), Vec::<String>::new());
}

#[test]
fn a_changed_upstream_command_with_identical_output_spares_the_dependent() {
    let space = Space::with(&cutoff("echo 42 > up.out"));
    space.run(&["run"]).success();

    space.write("stepwise.toml", &cutoff("echo 42 | cat > up.out"));
    let plan = space.plan_json(&[]);
    assert_eq!(plan_remaining(&plan), ["up", "mid", "low"]);
    assert_eq!(reasons(&plan, "up"), json!([{"kind": "command changed"}]));

    space
        .run(&["run"])
        .success()
        .stderr_has("skip   mid (up to date");
    assert_eq!(space.ran(), ["up", "mid", "low", "up"]);
    assert_eq!(space.ran_count("mid"), 1);
}

#[test]
fn when_upstream_writes_different_bytes_the_dependents_run() {
    let space = Space::with(&cutoff("echo 42 > up.out"));
    space.run(&["run"]).success();

    space.write("stepwise.toml", &cutoff("echo 43 > up.out"));
    let run = space.run(&["run"]);
    run.success();
    assert!(!run.stderr.contains("up to date"), "{}", run.stderr);
    assert_eq!(space.ran(), ["up", "mid", "low", "up", "mid", "low"]);
    assert_eq!(space.read("mid.out"), "43\n");
}

#[test]
fn a_forgotten_step_without_outputs_that_reruns_unchanged_spares_its_dependent() {
    let space = Space::with(&chain(&["a", "b"], &[]));
    space.run(&["run"]).success();
    space.run(&["forget", "a"]).success();
    assert_eq!(plan_remaining(&space.plan_json(&[])), ["a", "b"]);
    space
        .run(&["run"])
        .success()
        .stderr_has("skip   b (up to date");
    assert_eq!(space.ran(), ["a", "b", "a"]);
}

// --- 7. why ---------------------------------------------------------------------

#[test]
fn why_explains_a_done_a_stale_a_never_run_and_a_failed_step() {
    let toml = r#"
[[step]]
name = "done"
run = "echo done >> ran"
after = []

[[step]]
name = "stale"
run = "echo stale >> ran"
inputs = ["in.txt"]
after = []

[[step]]
name = "broken"
run = "echo broken >> ran; exit 5"
after = []

[[step]]
name = "later"
run = "echo later >> ran"
after = ["broken"]
"#;
    let space = Space::with(toml);
    space.write("in.txt", "one\n");
    space.run(&["run", "-k"]).code(1);
    rewrite(&space, "in.txt", "two\n");

    space
        .run(&["why", "done"])
        .success()
        .stdout_has("done: will be skipped (done)")
        .stdout_has("exactly as it is now");

    let text = space.run(&["why", "stale"]);
    text.success()
        .stdout_has("stale: will run (stale)")
        .stdout_has("input changed: in.txt (was ");
    let json = space.run(&["why", "stale", "--json"]);
    json.success();
    let doc = json.json();
    assert_eq!(doc["name"], "stale");
    assert_eq!(doc["action"], "run");
    assert_eq!(doc["state"], "stale");
    let why_reasons = doc["reasons"].as_array().expect("reasons");
    assert_eq!(why_reasons.len(), 1, "{doc}");
    let r = &why_reasons[0];
    assert_eq!(r["kind"], "input changed");
    assert_eq!(r["path"], "in.txt");
    let (was, now) = (r["was"].as_str().unwrap(), r["now"].as_str().unwrap());
    assert_eq!(was.len(), 32);
    assert_eq!(now.len(), 32);
    assert_ne!(was, now);
    assert_eq!(
        now,
        digest_of(&space, "in.txt").to_string(),
        "now is the digest of the file's content"
    );
    assert_eq!(was, Digest::of(b"one\n").to_string());
    // The text shows the same digests, short.
    text.stdout_has(&format!("(was {}, now {})", &was[..8], &now[..8]));

    space
        .run(&["why", "later"])
        .success()
        .stdout_has("later: will run (never run)")
        .stdout_has("no attempt recorded");
    let never = space.run(&["why", "later", "--json"]);
    never.success();
    assert_eq!(
        never.json()["reasons"],
        json!([{"kind": "never run", "was": null, "now": null}])
    );

    space
        .run(&["why", "broken"])
        .success()
        .stdout_has("broken: will run (failed)")
        .stdout_has("exit code 5");
    let failed = space.run(&["why", "broken", "--json"]);
    failed.success();
    assert_eq!(failed.json()["reasons"][0]["kind"], "failed");
    assert_eq!(failed.json()["reasons"][0]["attempt"], 1);
}

#[test]
fn why_names_the_dependency_that_will_run_and_why_it_runs() {
    let space = Space::with(&chain(&["a", "b"], &[]));
    space.run(&["run"]).success();
    space.run(&["forget", "a"]).success();
    space
        .run(&["why", "b"])
        .success()
        .stdout_has("b: will run (stale)")
        .stdout_has("dependency will run: a")
        .stdout_has("forgotten");
}

#[test]
fn why_for_an_unknown_step_is_a_usage_error() {
    let space = Space::with(&chain(&["a"], &[]));
    space.run(&["why", "nope"]).code(2).stderr_has("nope");
}

// --- 8. The stat cache ----------------------------------------------------------

/// Two independent steps with inputs; a also has an output.
const CACHED: &str = r#"
[[step]]
name = "a"
run = "echo a >> ran; cat data/*.csv > a.out"
inputs = ["data/*.csv"]
outputs = ["a.out"]

[[step]]
name = "b"
run = "echo b >> ran"
inputs = ["b.txt"]
after = []

[[step]]
name = "c"
run = "echo c >> ran"
after = ["a"]
"#;

/// A space where everything ran once and then b's input changed.
fn cached_space() -> Space {
    let space = Space::with(CACHED);
    space.write("data/1.csv", "1\n");
    space.write("data/2.csv", "2\n");
    space.write("b.txt", "b\n");
    space.run(&["run", "-j1"]).success();
    rewrite(&space, "b.txt", "B\n");
    space
}

/// A cache that tells the truth about every input and output.
fn true_cache(space: &Space) -> String {
    let files = ["data/1.csv", "data/2.csv", "b.txt", "a.out"];
    let entries: Vec<(&str, Digest)> = files.iter().map(|f| (*f, digest_of(space, f))).collect();
    stat_cache_text(space, &entries)
}

#[test]
fn the_stat_cache_deleted_garbled_or_truncated_changes_no_decision() {
    let space = cached_space();
    let reference = space.plan_json(&[]);
    assert_eq!(plan_remaining(&reference), ["b"]);
    assert_eq!(
        reasons(&reference, "b"),
        json!([{"kind": "input changed", "path": "b.txt"}])
    );

    let valid = true_cache(&space);
    let variants: Vec<(&str, Vec<u8>)> = vec![
        ("a valid cache", valid.clone().into_bytes()),
        ("an empty file", Vec::new()),
        ("garbage", b"\x00\xff not a cache \xfe\n\n\n".to_vec()),
        (
            "text garbage",
            b"stepwise stat-cache v1\nzz 1 2 3 4 5 /x\n".to_vec(),
        ),
        (
            "a cache cut in the middle",
            valid.as_bytes()[..valid.len() / 2].to_vec(),
        ),
        (
            "a cache without its checksum line",
            valid.as_bytes()[..valid.rfind("checksum").unwrap()].to_vec(),
        ),
    ];
    for (what, bytes) in variants {
        std::fs::write(space.join(STAT_CACHE), &bytes).unwrap();
        assert_eq!(space.plan_json(&[]), reference, "with {what}");
    }
    std::fs::remove_file(space.join(STAT_CACHE)).unwrap();
    assert_eq!(space.plan_json(&[]), reference, "without a cache");

    // A cache that cannot even be read (or written): a folder in its place.
    std::fs::create_dir(space.join(STAT_CACHE)).unwrap();
    assert_eq!(space.plan_json(&[]), reference, "with a folder as cache");
    space.run(&["run"]).success();
    assert_eq!(space.ran(), ["a", "b", "c", "b"]);
}

#[test]
fn a_run_with_a_garbage_stat_cache_runs_exactly_what_changed_and_repairs_it() {
    let space = cached_space();
    std::fs::write(space.join(STAT_CACHE), "garbage\n").unwrap();
    space.run(&["run"]).success();
    assert_eq!(space.ran(), ["a", "b", "c", "b"]);
    let cache = space.read(STAT_CACHE);
    assert!(
        cache.starts_with("stepwise stat-cache"),
        "the run wrote a fresh cache: {cache:?}"
    );
    assert_eq!(plan_remaining(&space.plan_json(&[])), Vec::<String>::new());
}

#[test]
fn the_stat_cache_is_trusted_only_while_the_stat_matches_exactly() {
    // A cache entry is believed without reading the file while size, mtime,
    // ctime, inode and device match: the only outside view of "not rehashed".
    // A lying entry shows it: the plan then sees a change that is not there.
    let space = cached_space();
    let reference = space.plan_json(&[]);
    let lie = Digest::of(b"not what the file holds");
    let mut entries: Vec<(&str, Digest)> = ["data/2.csv", "b.txt", "a.out"]
        .iter()
        .map(|f| (*f, digest_of(&space, f)))
        .collect();
    entries.push(("data/1.csv", lie));
    std::fs::write(space.join(STAT_CACHE), stat_cache_text(&space, &entries)).unwrap();

    let fooled = space.plan_json(&[]);
    assert_eq!(
        reasons(&fooled, "a"),
        json!([{"kind": "input changed", "path": "data/1.csv"}]),
        "the cached digest was used instead of reading data/1.csv"
    );

    // touch: the stat no longer matches, the file is read, the truth is back
    // and the unchanged bytes cause no run.
    shift_mtime(&space, "data/1.csv", 60);
    assert_eq!(space.plan_json(&[]), reference);
    space.run(&["run"]).success();
    assert_eq!(
        space.ran(),
        ["a", "b", "c", "b"],
        "a did not run after touch"
    );
}

#[test]
fn with_a_valid_stat_cache_touch_runs_nothing_and_a_changed_byte_still_runs() {
    let space = cached_space();
    space.run(&["run"]).success();
    assert_eq!(space.ran(), ["a", "b", "c", "b"]);
    std::fs::write(space.join(STAT_CACHE), true_cache(&space)).unwrap();

    for f in ["data/1.csv", "data/2.csv", "b.txt"] {
        shift_mtime(&space, f, 60);
    }
    assert_eq!(plan_remaining(&space.plan_json(&[])), Vec::<String>::new());
    space.run(&["run"]).success().stderr_has("nothing to do");

    // A changed byte, same size, mtime put back: the ctime still tells.
    std::fs::write(space.join(STAT_CACHE), true_cache(&space)).unwrap();
    let mtime = std::fs::metadata(space.join("data/2.csv"))
        .unwrap()
        .modified()
        .unwrap();
    space.write("data/2.csv", "3\n");
    std::fs::File::options()
        .write(true)
        .open(space.join("data/2.csv"))
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let plan = space.plan_json(&[]);
    assert_eq!(
        reasons(&plan, "a"),
        json!([{"kind": "input changed", "path": "data/2.csv"}])
    );
    space.run(&["run"]).success();
    assert_eq!(space.ran_count("a"), 2);
    assert_eq!(space.read("a.out"), "1\n3\n");
}

// --- 9. Missing inputs ----------------------------------------------------------

const NEEDS_MISSING: &str = r#"
[[step]]
name = "use"
run = "echo use >> ran"
inputs = ["config.ini", "data/*.csv"]
"#;

#[test]
fn a_missing_input_warns_in_plan_and_fails_the_step_without_running_it() {
    let space = Space::with(NEEDS_MISSING);
    space.write("config.ini", "x\n");

    let plan = space.plan_json(&[]);
    assert_eq!(
        warnings(&plan, "use"),
        json!([{"kind": "input missing", "pattern": "data/*.csv"}])
    );
    assert_eq!(decision(&plan, "use"), ("run".into(), "never run".into()));
    space
        .run(&["plan"])
        .success()
        .stdout_has("warning")
        .stdout_has("data/*.csv");

    let run = space.run(&["run"]);
    run.code(1)
        .stderr_has("warning: step `use`: input missing: data/*.csv")
        .stderr_has("FAILED use")
        .stderr_has("`data/*.csv`");
    assert!(!space.exists("ran"), "the command did not run");
    let finish = finishes(&space, "use");
    assert_eq!(finish.len(), 1);
    assert_eq!(finish[0]["ok"], false);
    assert!(
        finish[0]["error"]
            .as_str()
            .unwrap_or("")
            .contains("data/*.csv"),
        "{}",
        finish[0]
    );

    // Once the input is there, it runs.
    space.write("data/x.csv", "1\n");
    let plan = space.plan_json(&[]);
    assert_eq!(warnings(&plan, "use"), json!([]));
    space.run(&["run"]).success();
    assert_eq!(space.ran(), ["use"]);
}

#[test]
fn a_missing_plain_file_input_is_named_too() {
    let space = Space::with(NEEDS_MISSING);
    space.write("data/x.csv", "1\n");
    let plan = space.plan_json(&[]);
    assert_eq!(
        warnings(&plan, "use"),
        json!([{"kind": "input missing", "pattern": "config.ini"}])
    );
    space
        .run(&["run"])
        .code(1)
        .stderr_has("FAILED use")
        .stderr_has("`config.ini`");
    assert!(!space.exists("ran"));
}

#[test]
fn an_input_a_step_upstream_will_produce_is_no_warning_and_the_run_succeeds() {
    let toml = r#"
[[step]]
name = "make"
run = "echo make >> ran; mkdir -p gen; echo 1 > gen/a.csv; echo x > made.txt"
outputs = ["gen/", "made.txt"]

[[step]]
name = "use"
run = "echo use >> ran; cat made.txt gen/a.csv > used.txt"
inputs = ["made.txt", "gen/*.csv"]
"#;
    let space = Space::with(toml);
    let plan = space.plan_json(&[]);
    assert_eq!(warnings(&plan, "use"), json!([]), "{plan}");
    let text = space.run(&["plan"]);
    text.success();
    assert!(!text.stdout.contains("warning"), "{}", text.stdout);

    let run = space.run(&["run"]);
    run.success();
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    assert_eq!(space.ran(), ["make", "use"]);
    assert_eq!(space.read("used.txt"), "x\n1\n");
}

#[test]
fn an_input_declared_by_a_step_that_is_not_upstream_still_warns() {
    let toml = r#"
[[step]]
name = "make"
run = "echo x > made.txt"
outputs = ["made.txt"]

[[step]]
name = "use"
run = "cat made.txt"
inputs = ["made.txt"]
after = []
"#;
    let space = Space::with(toml);
    assert_eq!(
        warnings(&space.plan_json(&[]), "use"),
        json!([{"kind": "input missing", "pattern": "made.txt"}])
    );
}

// --- 10. forget --downstream and --dry-run ----------------------------------

/// a -> b -> c, d needs a, e needs nothing.
const TREE: &str = r#"
[[step]]
name = "a"
run = "echo a >> ran"

[[step]]
name = "b"
run = "echo b >> ran"

[[step]]
name = "c"
run = "echo c >> ran"

[[step]]
name = "d"
run = "echo d >> ran"
after = ["a"]

[[step]]
name = "e"
run = "echo e >> ran"
after = []
"#;

#[test]
fn forget_downstream_dry_run_lists_and_writes_nothing() {
    let space = Space::with(TREE);
    space.run(&["run", "-j1"]).success();
    let journal = space.journal_bytes().expect("a journal");
    let plan = space.plan_json(&[]);

    let dry = space.run(&["forget", "b", "--downstream", "--dry-run"]);
    dry.success().stdout_has("would forget 2 steps");
    let listed: Vec<&str> = dry.stdout.lines().skip(1).map(str::trim).collect();
    assert_eq!(listed, ["b", "c"]);
    assert_eq!(space.journal_bytes().unwrap(), journal, "byte-identical");
    assert_eq!(space.plan_json(&[]), plan);

    let dry = space.run(&["forget", "a", "--downstream", "--dry-run"]);
    dry.success().stdout_has("would forget 4 steps");
    let listed: Vec<&str> = dry.stdout.lines().skip(1).map(str::trim).collect();
    assert_eq!(listed, ["a", "b", "c", "d"]);
    space
        .run(&["forget", "b", "--dry-run"])
        .success()
        .stdout_has("would forget 1 step:");
    assert_eq!(space.journal_bytes().unwrap(), journal, "byte-identical");
}

#[test]
fn forget_downstream_forgets_the_step_and_everything_that_needs_it() {
    let space = Space::with(TREE);
    space.run(&["run", "-j1"]).success();
    space
        .run(&["forget", "b", "--downstream"])
        .success()
        .stderr_has("forgot b, c");
    let plan = space.plan_json(&[]);
    assert_eq!(plan_remaining(&plan), ["b", "c"]);
    for step in ["b", "c"] {
        assert_eq!(decision(&plan, step), ("run".into(), "forgotten".into()));
    }
    for step in ["a", "d", "e"] {
        assert_eq!(decision(&plan, step), skip_done(), "{step}");
    }
    space.run(&["run", "-j1"]).success();
    assert_eq!(space.ran(), ["a", "b", "c", "d", "e", "b", "c"]);
}

// --- 11. checkpoint import stamps ---------------------------------------------

const IMPORTED: &str = r#"
[[step]]
name = "a"
run = "{a}"
inputs = ["in.txt"]

[[step]]
name = "b"
run = "echo b >> ran"
"#;

fn imported(a_command: &str) -> String {
    IMPORTED.replace("{a}", a_command)
}

#[test]
fn an_imported_success_goes_stale_when_its_command_changes() {
    let space = Space::with(&imported("echo a >> ran"));
    space.write("in.txt", "x\n");
    space.write("cp.json", r#"[["a", true]]"#);
    let import = space.run(&["checkpoint", "import", "cp.json"]);
    import.success();
    assert!(!import.stderr.contains("warning"), "{}", import.stderr);
    let plan = space.plan_json(&[]);
    assert_eq!(decision(&plan, "a"), ("skip".into(), "imported".into()));
    assert_eq!(plan_remaining(&plan), ["b"]);

    space.write("stepwise.toml", &imported("echo A >> ran"));
    let plan = space.plan_json(&[]);
    assert_eq!(decision(&plan, "a"), run_stale());
    assert_eq!(reasons(&plan, "a"), json!([{"kind": "command changed"}]));
    space
        .run(&["why", "a"])
        .success()
        .stdout_has("the imported success")
        .stdout_has("command changed");
    space.run(&["run"]).success();
    assert_eq!(space.ran(), ["A", "b"]);
}

#[test]
fn an_imported_success_goes_stale_when_its_input_changes() {
    let space = Space::with(&imported("echo a >> ran"));
    space.write("in.txt", "x\n");
    space.write("cp.json", r#"[["a", true], ["b", true]]"#);
    space.run(&["checkpoint", "import", "cp.json"]).success();
    assert_eq!(plan_remaining(&space.plan_json(&[])), Vec::<String>::new());

    rewrite(&space, "in.txt", "y\n");
    let plan = space.plan_json(&[]);
    assert_eq!(
        reasons(&plan, "a"),
        json!([{"kind": "input changed", "path": "in.txt"}])
    );
    assert_eq!(plan_remaining(&plan), ["a", "b"]);
}

#[test]
fn an_import_while_an_input_is_missing_warns_and_counts_by_name() {
    let space = Space::with(&imported("echo a >> ran"));
    space.write("cp.json", r#"[["a", true]]"#);
    space
        .run(&["checkpoint", "import", "cp.json"])
        .success()
        .stderr_has("warning")
        .stderr_has("`a`: its fingerprint cannot be computed now");
    let plan = space.plan_json(&[]);
    assert_eq!(decision(&plan, "a"), ("skip".into(), "imported".into()));
    assert_eq!(plan_remaining(&plan), ["b"]);

    // By name means by name: a changed command does not matter.
    space.write("in.txt", "x\n");
    space.write("stepwise.toml", &imported("echo A >> ran"));
    assert_eq!(
        decision(&space.plan_json(&[]), "a"),
        ("skip".into(), "imported".into())
    );
    space
        .run(&["why", "a"])
        .success()
        .stdout_has("done by name");
}

#[test]
fn an_input_restored_after_an_import_by_name_does_not_rerun_the_imported_dependents() {
    // a was imported while its input was missing, so it counts by name; b,
    // imported with it, was stamped. Restoring a's input changes neither what
    // a is taken to have produced (a does not run) nor b's definition, so b
    // must not run while a is skipped.
    let space = Space::with(&imported("echo a >> ran"));
    space.write("cp.json", r#"[["a", true], ["b", true]]"#);
    space.run(&["checkpoint", "import", "cp.json"]).success();
    assert_eq!(plan_remaining(&space.plan_json(&[])), Vec::<String>::new());

    space.write("in.txt", "x\n");
    let plan = space.plan_json(&[]);
    assert_eq!(decision(&plan, "a"), ("skip".into(), "imported".into()));
    assert_eq!(
        decision(&plan, "b"),
        ("skip".into(), "imported".into()),
        "b runs although a, which it needs, is skipped: {}",
        step_of(&plan, "b")
    );
}

// --- 12. Outputs must stay inside the pipeline folder ----------------------

#[test]
fn outputs_outside_the_pipeline_folder_are_refused_before_anything_runs() {
    for (bad, problem) in [
        ("../x", "outside the pipeline's folder"),
        ("/tmp/x", "absolute path"),
        (".stepwise/x", "state dir"),
        ("sub/../../x", "outside the pipeline's folder"),
        (".stepwise", "state dir"),
    ] {
        let toml = format!(
            "[[step]]\nname = \"a\"\nrun = \"echo a >> ran\"\noutputs = [\"ok.txt\", \"{bad}\"]\n"
        );
        let space = Space::with(&toml);
        for command in [&["plan"][..], &["run"][..]] {
            space
                .run(command)
                .code(2)
                .stderr_has(&format!("invalid output `{bad}`"))
                .stderr_has(problem)
                // `outputs = [` is 11 columns, `"ok.txt", ` 10 more.
                .stderr_has("stepwise.toml:4:22");
        }
        assert!(!space.exists("ran"), "{bad}: nothing ran");
        assert!(space.journal_bytes().is_none(), "{bad}: no journal");
    }
}

#[test]
fn an_output_in_a_subfolder_going_up_but_staying_inside_is_accepted() {
    let toml = r#"
[[step]]
name = "a"
run = "echo a >> ../ran; echo 1 > ../top.txt"
dir = "w"
outputs = ["../top.txt"]
"#;
    let space = Space::with(toml);
    std::fs::create_dir(space.join("w")).unwrap();
    space.run(&["run"]).success();
    assert!(space.exists("top.txt"));
    std::fs::remove_file(space.join("top.txt")).unwrap();
    assert_eq!(
        reasons(&space.plan_json(&[]), "a"),
        json!([{"kind": "output missing", "path": "../top.txt"}])
    );
}

// --- More edges -----------------------------------------------------------------

#[test]
fn an_output_edited_by_hand_reruns_what_uses_it_not_what_made_it() {
    let space = Space::with(PRODUCER);
    space.write("in.txt", "data\n");
    space.run(&["run"]).success();

    rewrite(&space, "a.out", "edited\n");
    let plan = space.plan_json(&[]);
    assert_eq!(decision(&plan, "a"), skip_done(), "its output exists");
    assert_eq!(
        reasons(&plan, "b"),
        json!([{"kind": "dependency changed", "step": "a"}])
    );
    space.run(&["run"]).success();
    assert_eq!(space.ran(), ["a", "b", "b"]);
    assert_eq!(space.read("b.out"), "edited\n");
}

#[test]
fn early_cutoff_passes_through_a_step_without_outputs() {
    // up (outputs) -> mid (none) -> low: mid is found up to date, so its
    // fingerprint is unchanged, so low is too.
    let toml = r#"
[[step]]
name = "up"
run = "echo up >> ran; echo 42 > up.out"
outputs = ["up.out"]

[[step]]
name = "mid"
run = "echo mid >> ran"

[[step]]
name = "low"
run = "echo low >> ran"
"#;
    let space = Space::with(toml);
    space.run(&["run"]).success();
    space.run(&["forget", "up"]).success();
    space
        .run(&["run"])
        .success()
        .stderr_has("skip   mid (up to date")
        .stderr_has("skip   low (up to date");
    assert_eq!(space.ran(), ["up", "mid", "low", "up"]);
}

#[test]
fn an_attempt_that_never_started_for_a_missing_input_does_not_make_old_outputs_suspect() {
    // a succeeded; its input vanished, so the next attempt failed without
    // running (and, rightly, without removing a.out: it wrote nothing). With
    // the input back, byte for byte, a is exactly as when it succeeded and
    // its outputs are the ones it wrote.
    let space = Space::with(PRODUCER);
    space.write("in.txt", "data\n");
    space.run(&["run"]).success();
    std::fs::rename(space.join("in.txt"), space.join("saved")).unwrap();
    space.run(&["run"]).code(1).stderr_has("FAILED a");
    assert_eq!(space.ran(), ["a", "b"], "a's command did not run");
    assert_eq!(space.read("a.out"), "data\n", "nothing touched a.out");

    std::fs::rename(space.join("saved"), space.join("in.txt")).unwrap();
    let plan = space.plan_json(&[]);
    assert_eq!(
        decision(&plan, "a"),
        skip_done(),
        "reasons: {}",
        reasons(&plan, "a")
    );
}

#[test]
fn the_state_dir_is_never_an_input() {
    // `*` or `.` at the pipeline's root also names `.stepwise/`, whose
    // journal changes with every run: the step would never be done.
    for input in ["*", "."] {
        let toml = format!("[[step]]\nname = \"a\"\nrun = \"true\"\ninputs = [\"{input}\"]\n");
        let space = Space::with(&toml);
        space.write("data.csv", "1\n");
        space.run(&["run"]).success();
        assert_eq!(finishes(&space, "a").len(), 1);
        let plan = space.plan_json(&[]);
        assert_eq!(
            decision(&plan, "a"),
            skip_done(),
            "inputs = [{input:?}]: {}",
            step_of(&plan, "a")
        );
    }
}

#[test]
fn an_output_whose_name_only_begins_like_the_state_dir_is_accepted() {
    // `.stepwiserc` is not `.stepwise/` (nor `.stepwise-NAME/`, the state dir
    // of another pipeline file).
    let toml = "[[step]]\nname = \"a\"\nrun = \"echo a >> ran; touch .stepwiserc\"\noutputs = [\".stepwiserc\"]\n";
    let space = Space::with(toml);
    space.run(&["run"]).success();
    assert!(space.exists(".stepwiserc"));
}

#[test]
fn status_shows_a_stale_step_as_stale() {
    let space = Space::with(READS_DATA);
    space.write("data.txt", "hello\n");
    space.run(&["run"]).success();
    rewrite(&space, "data.txt", "bye\n");
    let status = space.run(&["status", "--json"]);
    status.success();
    let doc = status.json();
    let a = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "a")
        .unwrap()
        .clone();
    assert_eq!(a["state"], "stale");
    assert_eq!(a["last_attempt"]["ok"], true);
    space
        .run(&["status"])
        .success()
        .stdout_has("ok (now stale)");
}

#[test]
fn a_failed_step_never_removes_a_file_outside_the_pipeline_folder_through_a_symlink() {
    // `ext` is a symlink to a folder elsewhere: `ext/result.txt` looks inside
    // the pipeline's folder but is not. The failed attempt wrote nothing
    // there; the file outside must survive the cleanup.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("result.txt"), "precious\n").unwrap();
    let toml =
        "[[step]]\nname = \"a\"\nrun = \"echo a >> ran; exit 1\"\noutputs = [\"ext/result.txt\"]\n";
    let space = Space::with(toml);
    std::os::unix::fs::symlink(outside.path(), space.join("ext")).unwrap();
    let run = space.run(&["run"]);
    assert_eq!(space.ran(), ["a"]);
    assert_eq!(
        std::fs::read_to_string(outside.path().join("result.txt")).unwrap_or_default(),
        "precious\n",
        "a file outside the pipeline's folder was removed\n{}",
        run.stderr
    );
}
