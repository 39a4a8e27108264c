//! An invalid pipeline file is refused before anything runs: exit code 2,
//! a message with file:line:column, nothing run, no `.stepwise/` created.

mod common;
use common::*;

/// A step that proves, by appending to `ran`, that something ran.
const GOOD_STEP: &str = "[[step]]\nname = \"good\"\nrun = \"echo good >> ran\"\n";

/// Runs `stepwise run` on `toml` and checks the refusal: exit 2, every
/// fragment in stderr, nothing ran, no state dir. Returns stderr.
#[track_caller]
fn refused(toml: &str, fragments: &[&str]) -> String {
    let space = Space::with(toml);
    let out = space.run(&["run"]);
    out.code(2);
    for fragment in fragments {
        out.stderr_has(fragment);
    }
    assert!(
        !out.stderr.contains("panicked"),
        "a panic is never an answer:\n{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("Resume plan"),
        "nothing is planned:\n{}",
        out.stderr
    );
    assert!(space.ran().is_empty(), "a step ran: {:?}", space.ran());
    assert!(
        !space.exists(".stepwise"),
        "an invalid pipeline creates no state dir"
    );
    // `plan` refuses it the same way.
    let plan = space.run(&["plan"]);
    plan.code(2);
    for fragment in fragments {
        plan.stderr_has(fragment);
    }
    assert!(!space.exists(".stepwise"));
    out.stderr.clone()
}

#[test]
fn a_toml_syntax_error_is_refused_with_its_position() {
    refused(
        &format!("{GOOD_STEP}\n[[step]]\nname = \"b\"\nrun = \"never closed\n"),
        &["error: invalid TOML", "stepwise.toml:7:"],
    );
}

#[test]
fn an_unknown_top_level_key_is_refused_with_a_suggestion() {
    let stderr = refused(
        &format!("[pipline]\nshell = [\"sh\", \"-c\"]\n\n{GOOD_STEP}"),
        &[
            "unknown key `pipline` at the top level",
            "stepwise.toml:1:2",
            "did you mean `pipeline`?",
        ],
    );
    assert!(
        stderr.contains("1 | [pipline]"),
        "the line is quoted:\n{stderr}"
    );
}

#[test]
fn an_unknown_top_level_key_with_no_close_match_lists_the_allowed_keys() {
    refused(
        &format!("colour = \"blue\"\n{GOOD_STEP}"),
        &[
            "unknown key `colour` at the top level",
            "stepwise.toml:1:1",
            "pipeline, step",
        ],
    );
}

#[test]
fn an_unknown_key_in_pipeline_is_refused_with_a_suggestion() {
    refused(
        &format!("[pipeline]\nshel = [\"bash\", \"-c\"]\n\n{GOOD_STEP}"),
        &[
            "unknown key `shel` in [pipeline]",
            "stepwise.toml:2:1",
            "did you mean `shell`?",
        ],
    );
}

#[test]
fn an_unknown_key_in_a_step_is_refused_with_a_suggestion() {
    // The README's own example.
    let stderr = refused(
        &format!(
            "{GOOD_STEP}\n[[step]]\nname = \"report\"\nrun = \"echo report >> ran\"\naftr = [\"good\"]\n"
        ),
        &[
            "error: unknown key `aftr` in step `report`",
            "--> stepwise.toml:8:1",
            "did you mean `after`?",
        ],
    );
    assert!(stderr.contains("8 | aftr = [\"good\"]"), "{stderr}");
    assert!(stderr.contains("^^^^"), "the key is underlined:\n{stderr}");
}

#[test]
fn a_step_without_a_name_is_refused_at_its_header() {
    refused(
        &format!("{GOOD_STEP}\n[[step]]\nrun = \"echo nameless >> ran\"\n"),
        &["step #2 has no `name`", "stepwise.toml:5:1"],
    );
}

#[test]
fn a_step_without_run_is_refused_at_its_header() {
    refused(
        &format!("{GOOD_STEP}\n[[step]]\nname = \"lazy\"\n"),
        &["step #2 has no `run`", "stepwise.toml:5:1"],
    );
}

#[test]
fn an_empty_name_is_refused() {
    refused(
        &format!("{GOOD_STEP}\n[[step]]\nname = \"\"\nrun = \"echo x >> ran\"\n"),
        &["invalid step name", "empty", "stepwise.toml:6:8"],
    );
}

#[test]
fn a_timeout_of_zero_or_under_a_millisecond_is_refused() {
    for timeout in ["0s", "0.0001ms"] {
        refused(
            &format!("{GOOD_STEP}timeout = \"{timeout}\"\n"),
            &[
                "stepwise.toml:4:",
                "`timeout` must be at least 1ms",
                "leave `timeout` out",
            ],
        );
    }
}

#[test]
fn a_pipeline_without_steps_is_refused() {
    refused(
        "",
        &[
            "stepwise.toml:1:1",
            "the pipeline has no steps",
            "stepwise init",
        ],
    );
    refused(
        "[pipeline]\nshell = [\"bash\", \"-c\"]\n",
        &["the pipeline has no steps"],
    );
}

#[test]
fn a_template_that_cannot_expand_gets_one_error_not_a_cascade() {
    // The empty matrix and the glob matching nothing are the errors; the
    // placeholders they would have filled and the `after` naming them are
    // not reported on top.
    let stderr = refused(
        "[[step]]\nname = \"a\"\nmatrix = { s = [] }\nrun = \"echo {s}\"\n\n\
         [[step]]\nname = \"b\"\nfor_each = \"nothing/*.x\"\nrun = \"echo {stem}\"\n\n\
         [[step]]\nname = \"c\"\nafter = [\"a\", \"b[path=x]\"]\nrun = \"true\"\n",
        &["`matrix.s` in step `a` is empty", "matches no file"],
    );
    assert_eq!(stderr.matches("error:").count(), 2, "{stderr}");
}

#[test]
fn a_for_each_file_with_a_control_character_in_its_name_is_named_in_the_error() {
    let space =
        Space::with("[[step]]\nname = \"t\"\nfor_each = \"raw/*.txt\"\nrun = \"cat {path}\"\n");
    space.write("raw/ok.txt", "1\n");
    space.write("raw/bad\u{1}name.txt", "2\n");
    space
        .run(&["plan"])
        .code(2)
        .stderr_has("holds a control character: t[path=raw/bad\\u{1}name.txt]")
        .stderr_has("rename the file");
}

#[test]
fn an_empty_run_is_refused() {
    refused(
        &format!("{GOOD_STEP}\n[[step]]\nname = \"idle\"\nrun = \"  \"\n"),
        &["`run` is empty in step `idle`", "stepwise.toml:7:7"],
    );
}

#[test]
fn run_must_be_a_string() {
    refused(
        &format!("{GOOD_STEP}\n[[step]]\nname = \"n\"\nrun = 3\n"),
        &[
            "`run` in step `n` must be a string, found integer",
            "stepwise.toml:7:7",
        ],
    );
}

#[test]
fn after_must_be_a_list() {
    refused(
        &format!("{GOOD_STEP}\n[[step]]\nname = \"n\"\nrun = \"true\"\nafter = \"good\"\n"),
        &[
            "`after` in step `n` must be an array of strings",
            "stepwise.toml:8:9",
        ],
    );
}

#[test]
fn env_must_be_a_table() {
    refused(
        &format!("{GOOD_STEP}\n[[step]]\nname = \"n\"\nrun = \"true\"\nenv = 1\n"),
        &["`env` in step `n` must be a table", "stepwise.toml:8:7"],
    );
}

#[test]
fn shell_must_name_a_program() {
    refused(
        &format!("[pipeline]\nshell = []\n\n{GOOD_STEP}"),
        &["`shell` must name a program", "stepwise.toml:2:9"],
    );
}

#[test]
fn a_name_with_a_space_is_refused() {
    refused(
        &format!("{GOOD_STEP}\n[[step]]\nname = \"a b\"\nrun = \"true\"\n"),
        &[
            "invalid step name `a b`",
            "stepwise.toml:6:8",
            "letters, digits",
        ],
    );
}

#[test]
fn a_name_starting_with_a_dot_is_refused() {
    refused(
        &format!("{GOOD_STEP}\n[[step]]\nname = \".hidden\"\nrun = \"true\"\n"),
        &[
            "invalid step name `.hidden`",
            "starts with `.`",
            "stepwise.toml:6:8",
        ],
    );
}

#[test]
fn a_name_starting_with_a_dash_is_refused() {
    refused(
        &format!("{GOOD_STEP}\n[[step]]\nname = \"-x\"\nrun = \"true\"\n"),
        &["invalid step name `-x`", "stepwise.toml:6:8"],
    );
}

#[test]
fn a_duplicate_name_is_refused_and_points_at_the_first() {
    refused(
        &format!("{GOOD_STEP}\n[[step]]\nname = \"good\"\nrun = \"echo again >> ran\"\n"),
        &[
            "duplicate step name `good`",
            "stepwise.toml:6:8",
            "already defined on line 2",
        ],
    );
}

#[test]
fn after_naming_an_unknown_step_suggests_the_closest() {
    refused(
        "[[step]]\nname = \"build\"\nrun = \"echo build >> ran\"\n\n[[step]]\nname = \"test\"\nrun = \"true\"\nafter = [\"biuld\"]\n",
        &[
            "`after` names an unknown step `biuld`",
            "stepwise.toml:8:10",
            "did you mean `build`?",
        ],
    );
}

#[test]
fn a_two_step_cycle_is_refused_and_printed() {
    refused(
        "[[step]]\nname = \"a\"\nrun = \"echo a >> ran\"\nafter = [\"b\"]\n\n[[step]]\nname = \"b\"\nrun = \"echo b >> ran\"\n",
        &["dependency cycle: a -> b -> a", "stepwise.toml:4:10"],
    );
}

#[test]
fn a_three_step_cycle_is_refused_and_printed() {
    // a needs c (explicitly), c needs b and b needs a (each the step before).
    refused(
        "[[step]]\nname = \"a\"\nrun = \"echo a >> ran\"\nafter = [\"c\"]\n\n[[step]]\nname = \"b\"\nrun = \"echo b >> ran\"\n\n[[step]]\nname = \"c\"\nrun = \"echo c >> ran\"\n",
        &["dependency cycle: a -> c -> b -> a", "stepwise.toml:4:10"],
    );
}

#[test]
fn a_step_that_needs_itself_is_a_cycle() {
    refused(
        &format!("{GOOD_STEP}\n[[step]]\nname = \"a\"\nrun = \"true\"\nafter = [\"a\"]\n"),
        &["dependency cycle: a -> a", "stepwise.toml:8:10"],
    );
}

#[test]
fn a_step_written_with_single_brackets_is_refused_with_a_hint() {
    refused(
        "[step]\nname = \"a\"\nrun = \"echo a >> ran\"\n",
        &[
            "`step` must be an array of tables",
            "stepwise.toml:1:",
            "[[step]]",
        ],
    );
}

#[test]
fn every_problem_of_a_file_is_listed_at_once() {
    let stderr = refused(
        &format!(
            "{GOOD_STEP}\n[[step]]\nnmae = \"x\"\nrun = 3\n\n[[step]]\nname = \"good\"\nrun = \"true\"\n"
        ),
        &[
            "unknown key `nmae`",
            "stepwise.toml:6:1",
            "`run` in step #2 must be a string",
            "stepwise.toml:7:7",
            "duplicate step name `good`",
            "stepwise.toml:10:8",
        ],
    );
    let first = stderr.find("stepwise.toml:6:1").unwrap();
    let last = stderr.find("stepwise.toml:10:8").unwrap();
    assert!(first < last, "problems are listed in file order:\n{stderr}");
}

#[test]
fn a_missing_pipeline_file_is_explained() {
    let space = Space::new();
    for command in [&["run"][..], &["plan"], &["status"]] {
        space
            .run(command)
            .code(2)
            .stderr_has("no pipeline file at stepwise.toml")
            .stderr_has("-f PATH");
    }
    assert!(!space.exists(".stepwise"));
}

#[test]
fn a_pipeline_named_with_f_runs_in_its_own_folder_and_keeps_its_state_there() {
    let space = Space::new();
    space.write(
        "elsewhere/pipe.toml",
        "[[step]]\nname = \"a\"\nrun = \"echo a >> ran; pwd > where\"\n\n[[step]]\nname = \"b\"\nrun = \"echo b >> ran\"\n",
    );
    space
        .run(&["-f", "elsewhere/pipe.toml", "run"])
        .success()
        .stderr_has("Resume plan: 0 done, 2 remaining");
    assert_eq!(space.read("elsewhere/ran"), "a\nb\n");
    assert!(
        !space.exists("ran"),
        "steps run in the pipeline file's folder"
    );
    let where_ = space.read("elsewhere/where");
    let expected = std::fs::canonicalize(space.join("elsewhere")).unwrap();
    assert_eq!(
        std::fs::canonicalize(where_.trim()).unwrap(),
        expected,
        "a step's working dir is the pipeline file's folder"
    );
    // Not named stepwise.toml: its own state dir, named after it.
    assert!(space.exists("elsewhere/.stepwise-pipe/journal.jsonl"));
    assert!(
        !space.exists(".stepwise"),
        "no state dir in the current folder"
    );

    // `-f` after the command means the same, and the state is found again.
    space
        .run(&["run", "-f", "elsewhere/pipe.toml"])
        .success()
        .stderr_has("Resume plan: 2 done, 0 remaining");
    let plan = space.run(&["plan", "--json", "--file", "elsewhere/pipe.toml"]);
    plan.success();
    assert_eq!(plan.json()["done"], 2);
    assert_eq!(space.read("elsewhere/ran"), "a\nb\n");
}

#[test]
fn a_pipeline_named_through_dot_dot_or_a_symlink_is_the_same_pipeline_with_the_same_state() {
    let space = Space::with(
        "[[step]]\nname = \"gen\"\nrun = \"echo x > mid.txt\"\noutputs = [\"mid.txt\"]\n",
    );
    std::fs::create_dir(space.join("sub")).unwrap();
    std::os::unix::fs::symlink(space.path(), space.join("link")).unwrap();

    // From a subfolder, through `..`: the output is inside the folder.
    let mut cmd = space.command(&["-f", "../stepwise.toml", "run"]);
    cmd.current_dir(space.join("sub"));
    space
        .run_command(cmd)
        .success()
        .stderr_has("Resume plan: 0 done, 1 remaining");
    assert_eq!(space.read("mid.txt"), "x\n");
    // Every spelling finds the same state: done.
    for file in [
        "stepwise.toml",
        "sub/../stepwise.toml",
        "link/stepwise.toml",
    ] {
        space
            .run(&["-f", file, "run"])
            .success()
            .stderr_has("Resume plan: 1 done, 0 remaining");
    }
    assert!(!space.exists("sub/.stepwise"));
}

#[test]
fn errors_name_the_pipeline_file_as_given_with_f() {
    let space = Space::new();
    space.write("conf/pipe.toml", "[[step]]\nname = \"a\"\nrn = \"true\"\n");
    space
        .run(&["-f", "conf/pipe.toml", "run"])
        .code(2)
        .stderr_has("conf/pipe.toml:3:1")
        .stderr_has("did you mean `run`?");
    assert!(!space.exists("conf/.stepwise"));
}

#[test]
fn zero_jobs_is_a_usage_error() {
    let space = Space::with(GOOD_STEP);
    space.run(&["run", "-j", "0"]).code(2).stderr_has("0");
    assert!(space.ran().is_empty());
    assert!(!space.exists(".stepwise"));
}

#[test]
fn jobs_that_is_not_a_number_is_a_usage_error() {
    let space = Space::with(GOOD_STEP);
    space.run(&["run", "-j", "x"]).code(2).stderr_has("'x'");
    assert!(space.ran().is_empty());
    assert!(!space.exists(".stepwise"));
}

#[test]
fn an_unknown_command_is_a_usage_error() {
    let space = Space::with(GOOD_STEP);
    space.run(&["launch"]).code(2).stderr_has("launch");
    assert!(space.ran().is_empty());
}

#[test]
fn two_templates_with_the_same_name_are_refused_and_point_at_the_first() {
    refused(
        "[[step]]\nname = \"x\"\nmatrix = { s = [\"a\"] }\nafter = []\nrun = \"echo x-{s} >> ran\"\n\n[[step]]\nname = \"x\"\nmatrix = { t = [\"a\"] }\nafter = []\nrun = \"echo x-{t} >> ran\"\n",
        &[
            "duplicate step name `x`",
            "stepwise.toml:8:8",
            "the template `x` on line 2",
            "names must be unique",
        ],
    );
}

#[test]
fn a_step_named_like_a_template_is_refused_whichever_comes_first() {
    // `after = ["call"]` and `stepwise run call` could not mean both.
    let template = "[[step]]\nname = \"call-{s}\"\nmatrix = { s = [\"a\", \"b\"] }\nafter = []\nrun = \"echo call-{s} >> ran\"\n";
    let plain = "[[step]]\nname = \"call\"\nafter = []\nrun = \"echo call >> ran\"\n";
    refused(
        &format!("{plain}\n{template}"),
        &[
            "duplicate step name `call`: the template `call-{s}` is called `call`",
            "stepwise.toml:7:8",
            "a step with this name is already defined on line 2",
        ],
    );
    refused(
        &format!("{template}\n{plain}"),
        &[
            "duplicate step name `call`",
            "stepwise.toml:8:8",
            "the template `call-{s}` on line 2 is called `call`",
        ],
    );
}

#[test]
fn two_templates_called_alike_are_refused() {
    refused(
        "[[step]]\nname = \"call-{s}\"\nmatrix = { s = [\"a\"] }\nafter = []\nrun = \"echo {s} >> ran\"\n\n[[step]]\nname = \"call_{t}\"\nmatrix = { t = [\"b\"] }\nafter = []\nrun = \"echo {t} >> ran\"\n",
        &[
            "duplicate step name `call`: the template `call_{t}` is called `call`",
            "stepwise.toml:8:8",
            "the template `call-{s}` on line 2 is called `call`",
        ],
    );
}

#[test]
fn an_expansion_named_like_another_step_is_refused() {
    refused(
        "[[step]]\nname = \"call-a\"\nafter = []\nrun = \"echo plain >> ran\"\n\n[[step]]\nname = \"call-{s}\"\nmatrix = { s = [\"a\", \"b\"] }\nafter = []\nrun = \"echo {s} >> ran\"\n",
        &[
            "duplicate step name `call-a`: an expansion of `call-{s}` is named `call-a`",
            "stepwise.toml:7:8",
            "a step with this name is already defined on line 2",
        ],
    );
    // An expansion named like another template.
    refused(
        "[[step]]\nname = \"x-{s}\"\nmatrix = { s = [\"a\"] }\nafter = []\nrun = \"echo {s} >> ran\"\n\n[[step]]\nname = \"{t}\"\nmatrix = { t = [\"x\"] }\nafter = []\nrun = \"echo {t} >> ran\"\n",
        &[
            "duplicate step name `x`: an expansion of `{t}` is named `x`",
            "stepwise.toml:8:8",
            "the template `x-{s}` on line 2 is called `x`",
        ],
    );
}
