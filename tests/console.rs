//! What `run` prints when stderr is not a terminal (CI logs, pipes): plain
//! append-only lines, as snapshots; and the flags that change them: -q, -v,
//! --output, --color, NO_COLOR.

mod common;
use common::ui::normalize;
use common::*;

/// A step that prints, a flaky step retried once, a step that fails with a
/// long output, and a step that needs it.
const STORY: &str = r#"
[[step]]
name = "prepare"
run = "echo preparing; echo prepare >> ran"

[[step]]
name = "flaky"
retries = 1
retry_delay = "10ms"
run = "echo flaky >> ran; test $STEPWISE_ATTEMPT -ge 2 || { echo 'first try fails' >&2; exit 4; }"

[[step]]
name = "build"
run = "echo build >> ran; for i in $(seq 1 25); do echo line $i; done; test -f fixed || exit 3"

[[step]]
name = "ship"
run = "echo ship >> ran"
"#;

fn run(space: &Space, args: &[&str]) -> (i32, String) {
    let out = space.run(args);
    (out.code, normalize(&out.stderr, space.path()))
}

#[test]
fn a_run_in_plain_lines() {
    let space = Space::with(STORY);
    let (code, stderr) = run(&space, &["run", "-j1"]);
    assert_eq!(code, 1);
    insta::assert_snapshot!("plain_run_that_fails", stderr);
    // The failed step's last 20 lines: line 6 to line 25, not line 5.
    assert!(stderr.contains("  | line 6\n") && !stderr.contains("line 5\n"));

    space.write("fixed", "");
    let (code, stderr) = run(&space, &["run", "-j1"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!("plain_run_resumed", stderr);

    let (code, stderr) = run(&space, &["run"]);
    assert_eq!(code, 0);
    assert_eq!(
        stderr,
        "Resume plan: 4 done, 0 remaining\nnothing to do: every step in scope is done\n"
    );
}

#[test]
fn quiet_shows_only_what_went_wrong() {
    let space = Space::with(STORY);
    let (code, stderr) = run(&space, &["-q", "run", "-j1"]);
    assert_eq!(code, 1);
    insta::assert_snapshot!("quiet_run_that_fails", stderr);

    space.write("fixed", "");
    let (code, stderr) = run(&space, &["run", "-j1", "--quiet"]);
    assert_eq!(code, 0);
    assert_eq!(stderr, "", "a quiet success prints nothing");
}

#[test]
fn verbose_shows_the_plan_commands_and_logs() {
    let space = Space::with(STORY);
    space.write("fixed", "");
    let (code, stderr) = run(&space, &["run", "-j1", "prepare", "-v"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!("verbose_run", stderr);
}

#[test]
fn output_stream_shows_every_line_as_it_comes() {
    let space = Space::with(STORY);
    let (code, stderr) = run(&space, &["run", "-j1", "--output", "stream"]);
    assert_eq!(code, 1);
    insta::assert_snapshot!("stream_run", stderr);
    // Streamed output is shown once: the failure is not repeated as a tail.
    assert_eq!(stderr.matches("line 25").count(), 1, "{stderr}");
}

#[test]
fn output_stream_with_parallel_jobs_names_each_line() {
    let space = Space::with(
        r#"
[[step]]
name = "left"
after = []
run = "echo one; sleep 0.2; echo two"
[[step]]
name = "right"
after = []
run = "sleep 0.1; printf 'no newline at the end'"
"#,
    );
    let (code, stderr) = run(&space, &["run", "-j2", "--output", "stream"]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    for expected in ["left | one", "left | two", "right | no newline at the end"] {
        assert!(lines.contains(&expected), "{expected:?} in\n{stderr}");
    }
    let at = |l: &str| lines.iter().position(|x| *x == l).unwrap();
    assert!(at("left | one") < at("right | no newline at the end"));
    assert!(at("right | no newline at the end") < at("left | two"));
}

#[test]
fn output_none_shows_no_step_output() {
    let space = Space::with(STORY);
    let (code, stderr) = run(&space, &["run", "-j1", "--output", "none"]);
    assert_eq!(code, 1);
    assert!(!stderr.contains("line 25"), "{stderr}");
    assert!(!stderr.contains("first try fails"), "{stderr}");
    assert!(
        stderr.contains("FAILED build (exit code 3, [T]) - log: .stepwise/logs/build.1.log"),
        "the failure still names its log:\n{stderr}"
    );
}

#[test]
fn colour_follows_the_flag_and_no_color() {
    let space = Space::with(STORY);
    let out = space.run(&["--color", "always", "run", "-j1"]);
    assert!(
        out.stderr.contains("\x1b[32mok    \x1b[0m prepare"),
        "{:?}",
        out.stderr
    );
    assert!(
        out.stderr.contains("\x1b[1;31mFAILED\x1b[0m build"),
        "{:?}",
        out.stderr
    );
    assert!(
        out.stderr.contains("\x1b[33mretry \x1b[0m flaky"),
        "{:?}",
        out.stderr
    );

    // Not a terminal: auto means no colour, whatever NO_COLOR says.
    let space = Space::with(STORY);
    let out = space.run(&["run", "-j1"]);
    assert!(!out.stderr.contains('\x1b'), "{:?}", out.stderr);
    let out = space
        .command(&["--color", "never", "run", "-j1"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains('\x1b'));
}

#[test]
fn errors_are_coloured_only_when_asked() {
    let space = Space::with("[[step]]\nnmae = \"a\"\nrun = \"true\"\n");
    let plain = space.run(&["plan"]);
    plain.code(2);
    assert!(!plain.stderr.contains('\x1b'));
    let painted = space.run(&["--color=always", "plan"]);
    painted.code(2);
    assert!(
        painted.stderr.contains("\x1b[1;31merror:\x1b[0m"),
        "{:?}",
        painted.stderr
    );
    assert!(painted.stderr.contains("\x1b[34m= help:\x1b[0m"));
}

#[test]
fn quiet_and_verbose_do_not_mix() {
    let space = Space::with(STORY);
    let out = space.run(&["-q", "-v", "run"]);
    out.code(2);
    out.stderr_has("cannot be used with");
}

#[test]
fn a_failed_step_whose_last_line_is_huge_shows_that_line_s_end() {
    // 100 KB on one line, then the error at its end: more than the window
    // the tail reads, and more than a console line should hold.
    let space = Space::with(
        "[[step]]\nname = \"big\"\nrun = \"head -c 100000 /dev/zero | tr '\\\\0' x; printf 'the real error'; exit 1\"\n",
    );
    let out = space.run(&["run"]);
    out.code(1)
        .stderr_has("  | …xxx")
        .stderr_has("xthe real error\n");
    let shown = out.stderr.lines().find(|l| l.starts_with("  | ")).unwrap();
    assert_eq!(shown.chars().count(), "  | …".chars().count() + 500);
}
