//! Error messages, as snapshots: the rustc/just style, a caret under the
//! problem in the file it is in, and a hint of what to do.

mod common;
use common::ui::normalize;
use common::*;

/// stderr of a command that must fail with `code`.
fn error(space: &Space, args: &[&str], code: i32) -> String {
    let out = space.run(args);
    out.code(code);
    normalize(&out.stderr, space.path())
}

#[test]
fn pipeline_file_errors() {
    let space = Space::with(
        r#"[pipeline]
shell = "sh -c"
jobs = 0

[[step]]
name = "fetch"
run = "true"
retries = -1

[[step]]
name = "fetch"
run = "true"
aftr = ["fetch"]

[[step]]
name = "bad name!"
run = "true"
after = ["fecth"]
timeout = "soon"
env = { "A=B" = "v" }
"#,
    );
    insta::assert_snapshot!(error(&space, &["plan"], 2));
}

#[test]
fn duplicate_names_involving_templates() {
    let space = Space::with(
        r#"[[step]]
name = "call"
run = "true"

[[step]]
name = "call-{sample}"
matrix = { sample = ["s1", "s2"] }
run = "true"

[[step]]
name = "{sample}-fetch"
matrix = { sample = ["s1"] }
run = "true"

[[step]]
name = "fetch_{fold}"
matrix = { fold = [1] }
run = "true"

[[step]]
name = "s1-fetch"
run = "true"
"#,
    );
    insta::assert_snapshot!(error(&space, &["plan"], 2));
}

#[test]
fn a_cycle() {
    let space = Space::with(
        "[[step]]\nname = \"a\"\nrun = \"true\"\nafter = [\"b\"]\n\n[[step]]\nname = \"b\"\nrun = \"true\"\nafter = [\"a\"]\n",
    );
    insta::assert_snapshot!(error(&space, &["run"], 2));
}

#[test]
fn a_toml_syntax_error() {
    let space = Space::with("[[step]]\nname = \"a\"\nrun = \"never closed\n");
    insta::assert_snapshot!(error(&space, &["run"], 2));
}

#[test]
fn command_line_errors() {
    let space = Space::with("[[step]]\nname = \"build\"\nrun = \"true\"\n");
    let mut all = String::new();
    for args in [
        &["run", "biuld"][..],
        &["why", "nothing-like-it"],
        &["status", "--run", "3"],
        &["log", "build"],
    ] {
        all += &format!(
            "$ stepwise {}\n{}\n",
            args.join(" "),
            error(&space, args, 2)
        );
    }
    space.run(&["run"]).success();
    all += &format!(
        "$ stepwise status --run 7\n{}\n",
        error(&space, &["status", "--run", "7"], 2)
    );
    all += &format!("$ stepwise init\n{}\n", error(&space, &["init"], 2));
    insta::assert_snapshot!(all);
}

#[test]
fn a_missing_pipeline_file() {
    let space = Space::new();
    insta::assert_snapshot!(error(&space, &["plan"], 2));
}

#[test]
fn a_bad_checkpoint_points_at_the_problem() {
    let space = Space::with("[[step]]\nname = \"a\"\nrun = \"true\"\n");
    space.write("cp.json", "[\n  [\"a\", true],\n  [\"b\", \"yes\"]\n]\n");
    insta::assert_snapshot!(error(&space, &["checkpoint", "import", "cp.json"], 2));
    assert!(space.journal_bytes().is_none(), "nothing was imported");
}
