//! Steps can't hurt the machine and secrets stay secret: nothing outside
//! the pipeline's folder is deleted (symlinks included), step names cannot
//! reach outside the logs folder, `env` values are never printed or stored
//! in clear, `secret_env` values not even hashed, and the state dir is
//! private.

mod common;
use common::*;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use proptest::prelude::*;
use stepwise::state::dir::StateDir;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

// ---- nothing outside the project is touched ----

#[test]
fn an_output_that_is_a_symlink_to_a_file_outside_loses_the_link_never_the_file() {
    let outside = tempfile::tempdir().unwrap();
    let precious = outside.path().join("precious.txt");
    std::fs::write(&precious, "precious\n").unwrap();
    let space = Space::with(
        "[[step]]\nname = \"a\"\nrun = \"echo a >> ran; exit 1\"\noutputs = [\"link.txt\"]\n",
    );
    std::os::unix::fs::symlink(&precious, space.join("link.txt")).unwrap();
    space.run(&["run"]).code(1);
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "precious\n");
    assert!(
        std::fs::symlink_metadata(space.join("link.txt")).is_err(),
        "the failed attempt's output (the link itself) is removed"
    );
}

#[test]
fn a_failed_step_keeps_an_output_that_is_or_holds_its_own_input() {
    // `data/` is both what the step reads (data/raw.csv) and what it
    // writes; `db` is updated in place. A failure must not delete the input.
    let space = Space::with(
        r#"
[[step]]
name = "update"
run = "echo half >> db; echo half > data/summary.csv; exit 1"
inputs = ["data/raw.csv", "db"]
outputs = ["data", "db", "other.txt"]
"#,
    );
    space.write("data/raw.csv", "precious\n");
    space.write("db", "rows\n");
    space.write("other.txt", "made by an earlier attempt\n");
    space
        .run(&["run"])
        .code(1)
        .stderr_has("data was not removed after `update` failed: it holds the step's own input data/raw.csv")
        .stderr_has("db was not removed after `update` failed: it is the step's own input db");
    assert_eq!(space.read("data/raw.csv"), "precious\n");
    assert_eq!(space.read("db"), "rows\nhalf\n");
    assert!(
        !space.exists("other.txt"),
        "an output that is no input is removed as ever"
    );
}

#[test]
fn an_output_folder_that_is_a_symlink_outside_loses_the_link_never_the_contents() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("keep.txt"), "keep\n").unwrap();
    let space = Space::with(
        "[[step]]\nname = \"a\"\nrun = \"echo a >> ran; exit 1\"\noutputs = [\"results/\"]\n",
    );
    std::os::unix::fs::symlink(outside.path(), space.join("results")).unwrap();
    space.run(&["run"]).code(1);
    assert_eq!(
        std::fs::read_to_string(outside.path().join("keep.txt")).unwrap(),
        "keep\n"
    );
    assert!(outside.path().is_dir());
}

#[test]
fn forget_deletes_nothing_even_through_symlinks() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("keep.txt"), "keep\n").unwrap();
    let space = Space::with(
        "[[step]]\nname = \"a\"\nrun = \"echo a >> ran\"\noutputs = [\"results/keep.txt\", \"link\"]\n",
    );
    std::os::unix::fs::symlink(outside.path(), space.join("results")).unwrap();
    std::os::unix::fs::symlink(outside.path(), space.join("link")).unwrap();
    space.run(&["run"]).success();
    for args in [
        &["forget", "a", "--dry-run"][..],
        &["forget", "a"],
        &["forget", "--all"],
        &["forget", "a", "--downstream"],
    ] {
        space.run(args).success();
    }
    assert_eq!(
        std::fs::read_to_string(outside.path().join("keep.txt")).unwrap(),
        "keep\n"
    );
    assert!(std::fs::symlink_metadata(space.join("link")).is_ok());
    assert!(std::fs::symlink_metadata(space.join("results")).is_ok());
}

#[test]
fn fsck_repair_deletes_nothing_outside_the_state_dir() {
    let space = Space::with(&chain(&["a"], &[]));
    space.run(&["run"]).success();
    std::fs::write(space.join(".stepwise/stat-cache"), "garbage").unwrap();
    let before: Vec<_> = std::fs::read_dir(space.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    space.run(&["fsck", "--repair"]).success();
    let after: Vec<_> = std::fs::read_dir(space.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(before, after);
}

#[test]
fn step_names_that_could_leave_the_logs_folder_are_refused() {
    for bad in [
        "../x",
        "a/b",
        "..",
        ".hidden",
        "-x",
        "a\\\\b",
        "a b",
        "/abs",
        "x/../../y",
    ] {
        let space = Space::with(&format!("[[step]]\nname = \"{bad}\"\nrun = \"true\"\n"));
        space.run(&["run"]).code(2).stderr_has("invalid step name");
        assert!(
            !space.exists(".stepwise"),
            "{bad}: the state dir was created"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever name the validator accepts, its log path is a plain file
    /// right inside the logs folder.
    #[test]
    fn every_accepted_step_name_keeps_its_log_inside_the_logs_folder(
        name in "[a-z./\\\\_ -]{1,12}",
        attempt in 1u32..1000,
    ) {
        let toml = format!("[[step]]\nname = {}\nrun = \"true\"\n", toml_string(&name));
        if let Ok(p) = stepwise::Pipeline::parse(Path::new("stepwise.toml"), Path::new("/p"), &toml) {
            let state = StateDir::new("/p/.stepwise");
            let log = state.log(&p.steps[0].name, attempt);
            prop_assert_eq!(log.parent(), Some(Path::new("/p/.stepwise/logs")));
            let file = log.file_name().and_then(|f| f.to_str()).unwrap_or("");
            prop_assert!(!file.starts_with('.'), "{}", file);
            prop_assert!(log.components().all(|c| c.as_os_str() != ".."), "{}", log.display());
        }
    }
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

// ---- secrets ----

const PIPELINE_SECRET: &str = "pipeline-secret-Zq81";
const STEP_SECRET: &str = "step-secret-Kx07";

fn with_env_values(pipeline_value: &str, step_value: &str) -> String {
    format!(
        "[pipeline]\nenv = {{ API_KEY = \"{pipeline_value}\" }}\n\n[[step]]\nname = \"a\"\nrun = \"test -n \\\"$API_KEY$PASSWORD\\\" && echo a >> ran\"\nenv = {{ PASSWORD = \"{step_value}\" }}\n\n[[step]]\nname = \"b\"\nrun = \"echo b >> ran; exit 1\"\n"
    )
}

/// Every command that shows state, with all it printed.
fn everything_printed(space: &Space) -> String {
    let mut all = String::new();
    for args in [
        &["plan"][..],
        &["plan", "--json"],
        &["why", "a"],
        &["why", "a", "--json"],
        &["status"],
        &["status", "--json"],
        &["checkpoint", "export"],
        &["fsck"],
        &["log", "b"],
        &["forget", "--dry-run", "a"],
    ] {
        let out = space.run(args);
        all += &out.stdout;
        all += &out.stderr;
    }
    all
}

#[test]
fn env_values_are_never_printed_or_stored_in_clear() {
    let space = Space::with(&with_env_values(PIPELINE_SECRET, STEP_SECRET));
    let mut printed = String::new();
    let first = space.run(&["run"]);
    first.code(1);
    printed += &(first.stdout + &first.stderr);
    // Changed values: the step is stale, and `why` explains it by key.
    space.write(
        "stepwise.toml",
        &with_env_values(&format!("{PIPELINE_SECRET}2"), &format!("{STEP_SECRET}2")),
    );
    let why = space.run(&["why", "a"]);
    why.success()
        .stdout_has("env changed: API_KEY")
        .stdout_has("env changed: PASSWORD");
    printed += &everything_printed(&space);
    let second = space.run(&["run"]);
    printed += &(second.stdout + &second.stderr);
    printed += &everything_printed(&space);

    let journal = space.journal();
    for secret in [PIPELINE_SECRET, STEP_SECRET] {
        assert!(!journal.contains(secret), "the journal holds {secret}");
        assert!(!printed.contains(secret), "printed {secret}:\n{printed}");
    }
    // What the journal keeps of a value is its hash.
    let hash = stepwise::fingerprint::text(STEP_SECRET).to_string();
    assert!(journal.contains(&hash));
}

fn secret_pipeline(extra_a: &str) -> String {
    format!(
        "[[step]]\nname = \"a\"\nrun = \"test \\\"$TOKEN\\\" = \\\"$EXPECTED\\\" && echo a >> ran\"\nsecret_env = [\"TOKEN\"]\n{extra_a}\n[[step]]\nname = \"b\"\nrun = \"test -z \\\"${{TOKEN:-}}\\\" && echo b >> ran\"\n"
    )
}

fn run_with_token(space: &Space, args: &[&str], token: Option<&str>) -> Outcome {
    let mut cmd = space.command(args);
    match token {
        Some(t) => cmd.env("TOKEN", t).env("EXPECTED", t),
        None => cmd.env_remove("TOKEN"),
    };
    space.run_command(cmd)
}

#[test]
fn secret_env_reaches_only_its_step_and_never_the_journal_or_the_console() {
    let secret = "tok-3e9f-secret";
    let space = Space::with(&secret_pipeline(""));
    let out = run_with_token(&space, &["run"], Some(secret));
    out.success();
    assert_eq!(space.ran(), ["a", "b"], "a got TOKEN, b did not");
    let journal = space.journal();
    assert!(!journal.contains(secret));
    assert!(
        !journal.contains(&stepwise::fingerprint::text(secret).to_string()),
        "not even its hash"
    );
    let mut printed = out.stdout + &out.stderr;
    for args in [
        &["plan", "--json"][..],
        &["why", "a"],
        &["why", "a", "--json"],
        &["status"],
    ] {
        let o = run_with_token(&space, args, Some(secret));
        printed += &(o.stdout + &o.stderr);
    }
    assert!(!printed.contains(secret), "{printed}");
}

#[test]
fn a_changed_secret_value_does_not_rerun_the_step() {
    let space = Space::with(&secret_pipeline(""));
    run_with_token(&space, &["run"], Some("first")).success();
    run_with_token(&space, &["run"], Some("rotated"))
        .success()
        .stderr_has("nothing to do");
    assert_eq!(space.ran(), ["a", "b"]);
    // To rerun with the new value, forget it.
    run_with_token(&space, &["forget", "a"], Some("rotated")).success();
    run_with_token(&space, &["run"], Some("rotated")).success();
    assert_eq!(space.ran(), ["a", "b", "a"]);
}

#[test]
fn declaring_a_secret_reruns_the_step_as_a_definition_change() {
    let space = Space::with(
        "[[step]]\nname = \"a\"\nrun = \"echo a >> ran\"\n[[step]]\nname = \"b\"\nrun = \"echo b >> ran\"\nafter = []\n",
    );
    space.run(&["run"]).success();
    space.write(
        "stepwise.toml",
        "[[step]]\nname = \"a\"\nrun = \"echo a >> ran\"\nsecret_env = [\"TOKEN\"]\n[[step]]\nname = \"b\"\nrun = \"echo b >> ran\"\nafter = []\n",
    );
    run_with_token(&space, &["why", "a"], Some("x"))
        .success()
        .stdout_has("definition changed: secret_env");
    run_with_token(&space, &["run"], Some("x")).success();
    // a and b are independent: the first run may finish them in any order.
    assert_eq!((space.ran_count("a"), space.ran_count("b")), (2, 1));
    assert_eq!(space.ran().last().map(String::as_str), Some("a"));
}

#[test]
fn a_secret_missing_from_the_environment_fails_the_step_without_starting_it() {
    let space = Space::with(&secret_pipeline(""));
    run_with_token(&space, &["run"], None)
        .code(1)
        .stderr_has("`TOKEN` (in its `secret_env`) is not set in stepwise's environment");
    assert!(space.ran().is_empty());
}

#[test]
fn a_secret_also_set_in_env_is_refused() {
    let in_step_env = secret_pipeline("env = { TOKEN = \"in clear\" }");
    let in_pipeline_env = format!(
        "[pipeline]\nenv = {{ TOKEN = \"in clear\" }}\n{}",
        secret_pipeline("")
    );
    for (toml, place) in [
        (in_step_env, "this step's `env`"),
        (in_pipeline_env, "`[pipeline] env`"),
    ] {
        let space = Space::with(&toml);
        run_with_token(&space, &["run"], Some("x"))
            .code(2)
            .stderr_has(&format!(
                "`TOKEN` is in `secret_env` and also set in {place}"
            ));
        assert!(!space.exists(".stepwise"));
    }
}

// ---- permissions ----

#[test]
fn the_state_dir_is_private_and_so_are_the_journal_and_the_logs() {
    let space = Space::with("[[step]]\nname = \"a\"\nrun = \"echo some output\"\n");
    space.run(&["run"]).success();
    assert_eq!(mode(&space.join(".stepwise")), 0o700);
    assert_eq!(mode(&space.join(".stepwise/logs")), 0o700);
    assert_eq!(mode(&space.join(".stepwise/logs/a.1.log")), 0o600);
    assert_eq!(mode(&space.join(".stepwise/journal.jsonl")), 0o600);
}

#[test]
fn fsck_notes_a_state_dir_open_to_others() {
    let space = Space::with(&chain(&["a"], &[]));
    space.run(&["run"]).success();
    std::fs::set_permissions(
        space.join(".stepwise"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    space
        .run(&["fsck"])
        .success()
        .stdout_has("open to other users (mode 755)");
}
