//! Matrix and per-file steps: written once, expanded per value or per file,
//! resumed item by item.

mod common;
use common::*;

const SAMPLES: &str = r#"
[[step]]
name = "align"
matrix = { sample = ["s1", "s2", "s3"], fold = [1, 2] }
run = "echo align-{sample}-{fold} >> ran; echo {sample} {fold} > a_{sample}_{fold}.txt; test {sample}{fold} != s22 -o -f fixed"
outputs = ["a_{sample}_{fold}.txt"]

[[step]]
name = "merge"
run = "echo merge >> ran; cat {align.outputs} > merged.txt"
inputs = ["{align.outputs}"]
outputs = ["merged.txt"]

[[step]]
name = "other"
after = []
run = "echo other >> ran"
"#;

#[test]
fn a_3x2_matrix_runs_6_steps_and_the_resume_runs_only_the_failed_one_and_its_dependents() {
    let space = Space::with(SAMPLES);
    let out = space.run(&["run", "-j1", "--keep-going"]);
    out.code(1).stderr_has("FAILED align[fold=2,sample=s2]");
    let mut aligned: Vec<String> = space
        .ran()
        .into_iter()
        .filter(|l| l.starts_with("align"))
        .collect();
    aligned.sort();
    assert_eq!(aligned.len(), 6, "{aligned:?}");
    assert_eq!(space.ran_count("merge"), 0, "merge needs every expansion");
    assert_eq!(space.ran_count("other"), 1);

    space.write("fixed", "");
    let before = space.ran().len();
    space
        .run(&["run"])
        .success()
        .stderr_has("Resume plan: 6 done, 2 remaining");
    assert_eq!(space.ran()[before..], ["align-s2-2", "merge"]);
    let merged = space.read("merged.txt");
    assert_eq!(
        merged.lines().count(),
        6,
        "merge saw every expansion's output:\n{merged}"
    );
}

#[test]
fn reordering_the_matrix_changes_nothing_to_run() {
    let space = Space::with(&SAMPLES.replace(" -o -f fixed", "; true"));
    space.run(&["run"]).success();
    space.write(
        "stepwise.toml",
        &SAMPLES.replace(" -o -f fixed", "; true").replace(
            r#"matrix = { sample = ["s1", "s2", "s3"], fold = [1, 2] }"#,
            r#"matrix = { fold = [2, 1], sample = ["s3", "s1", "s2"] }"#,
        ),
    );
    space
        .run(&["plan"])
        .success()
        .stdout_has("Resume plan: 8 done, 0 remaining");
    let before = space.ran().len();
    space.run(&["run"]).success();
    assert_eq!(space.ran().len(), before);
}

#[test]
fn adding_a_value_runs_only_the_new_expansions_and_the_aggregate() {
    let toml = SAMPLES.replace(" -o -f fixed", "; true");
    let space = Space::with(&toml);
    space.run(&["run"]).success();
    let before = space.ran().len();
    space.write(
        "stepwise.toml",
        &toml.replace(r#"["s1", "s2", "s3"]"#, r#"["s1", "s2", "s3", "s4"]"#),
    );
    space
        .run(&["run"])
        .success()
        .stderr_has("Resume plan: 7 done, 3 remaining");
    let mut new: Vec<String> = space.ran()[before..].to_vec();
    new.sort();
    assert_eq!(new, ["align-s4-1", "align-s4-2", "merge"]);
}

#[test]
fn a_per_file_step_over_50_files_where_3_change_reruns_exactly_3_and_the_aggregate() {
    let space = Space::with(
        r#"
[[step]]
name = "thumb"
for_each = "raw/*.jpg"
run = "echo thumb-{stem} >> ran; mkdir -p thumbs; cp {path} thumbs/{stem}.png"
inputs = ["{path}"]
outputs = ["thumbs/{stem}.png"]

[[step]]
name = "index"
run = "echo index >> ran; ls thumbs > index.txt"
inputs = ["{thumb.outputs}"]
outputs = ["index.txt"]
"#,
    );
    for i in 0..50 {
        space.write(&format!("raw/p{i:02}.jpg"), &format!("picture {i}\n"));
    }
    space.run(&["run", "-j2"]).success();
    assert_eq!(space.ran().len(), 51);
    for i in [3, 17, 42] {
        space.write(
            &format!("raw/p{i:02}.jpg"),
            &format!("picture {i}, edited\n"),
        );
    }
    space
        .run(&["run"])
        .success()
        .stderr_has("Resume plan: 47 done, 4 remaining");
    let mut rerun: Vec<String> = space.ran()[51..].to_vec();
    rerun.sort();
    assert_eq!(rerun, ["index", "thumb-p03", "thumb-p17", "thumb-p42"]);

    // A new file is picked up by the next plan: one new expansion.
    space.write("raw/p50.jpg", "picture 50\n");
    space
        .run(&["run"])
        .success()
        .stderr_has("Resume plan: 50 done, 2 remaining");
    assert_eq!(space.ran_count("thumb-p50"), 1);
}

#[test]
fn per_item_chains_do_not_wait_for_other_items() {
    let space = Space::with(
        r#"
[[step]]
name = "fetch"
matrix = { item = ["fast", "slow"] }
run = "if [ {item} = slow ]; then while [ ! -f done-fast ]; do sleep 0.02; done; fi; echo fetch-{item} >> ran"

[[step]]
name = "process"
matrix = { item = ["fast", "slow"] }
after = ["fetch[item={item}]"]
run = "echo process-{item} >> ran; touch done-{item}"
"#,
    );
    // With -j2, `slow` can only finish once `process[item=fast]` ran: that
    // needs `fetch[item=fast]` alone, not every fetch.
    let out = space.run(&["run", "-j2"]);
    out.success();
    let ran = space.ran();
    let at = |x: &str| ran.iter().position(|l| l == x).unwrap();
    assert!(at("process-fast") < at("fetch-slow"), "{ran:?}");
}

#[test]
fn a_template_or_one_expansion_can_be_named_on_the_command_line() {
    let space = Space::with(&SAMPLES.replace(" -o -f fixed", "; true"));
    space
        .run(&["run", "align[sample=s1]"])
        .success()
        .stderr_has("Resume plan: 0 done, 2 remaining");
    let mut ran = space.ran();
    ran.sort();
    assert_eq!(ran, ["align-s1-1", "align-s1-2"]);
    space
        .run(&["run", "align[fold=1,sample=s3]"])
        .success()
        .stderr_has("0 done, 1 remaining");
    space
        .run(&["run", "align"])
        .success()
        .stderr_has("Resume plan: 3 done, 3 remaining");
    space
        .run(&["plan", "align[sample=s9]"])
        .code(2)
        .stderr_has("no expansion of `align` matches");
    space
        .run(&["why", "align"])
        .code(2)
        .stderr_has("names 6 steps");
    space
        .run(&["plan"])
        .success()
        .stdout_has("align")
        .stdout_has("6 steps: 6 done");
    space
        .run(&["plan", "--expand"])
        .success()
        .stdout_has("align[fold=2,sample=s3]");
}

#[test]
fn matrix_values_from_a_file_and_a_csv_column() {
    let space = Space::with(
        r#"
[[step]]
name = "greet"
matrix_from = "names.txt"
run = "echo hello-{item} >> ran"

[[step]]
name = "score"
matrix_from = { file = "table.csv", column = "sample" }
after = []
run = "echo score-{sample} >> ran"
"#,
    );
    space.write("names.txt", "ann\nbob\n\n# a comment\n");
    space.write("table.csv", "sample,reads\nx1,10\nx2,20\n");
    space.run(&["run", "-j1"]).success();
    let mut ran = space.ran();
    ran.sort();
    assert_eq!(ran, ["hello-ann", "hello-bob", "score-x1", "score-x2"]);
    // A changed list adds (and drops) expansions; the compiled pipeline is
    // not reused for a changed list.
    space.write("names.txt", "ann\ncid\n");
    space
        .run(&["run"])
        .success()
        .stderr_has("Resume plan: 3 done, 1 remaining");
    assert_eq!(space.ran_count("hello-cid"), 1);
    assert_eq!(space.ran_count("hello-ann"), 1);
}

fn invalid(toml: &str, message: &str, position: &str) {
    let space = Space::with(toml);
    space.write("raw/.keep", "");
    let out = space.run(&["plan"]);
    out.code(2).stderr_has(message).stderr_has(position);
    assert!(!space.exists(".stepwise"), "nothing written");
}

#[test]
fn every_expansion_error_names_its_place() {
    invalid(
        "[[step]]\nname = \"a\"\nmatrix = { x = [1] }\nrun = \"echo {y}\"\n",
        "unknown placeholder `{y}`; the variables here are: x",
        "stepwise.toml:4:7",
    );
    invalid(
        "[[step]]\nname = \"a\"\nmatrix = { x = [] }\nrun = \"true\"\n",
        "`matrix.x` in step `a` is empty",
        "stepwise.toml:3:16",
    );
    invalid(
        "[[step]]\nname = \"a-{x}\"\nmatrix = { x = [1, 2], y = [1, 2] }\nrun = \"true\"\n",
        "two expansions of `a` are both named `a-1`",
        "stepwise.toml:3:1",
    );
    invalid(
        "[[step]]\nname = \"a\"\nfor_each = \"raw/*.jpg\"\nrun = \"true\"\n",
        "`for_each = \"raw/*.jpg\"` matches no file",
        "stepwise.toml:3:12",
    );
    invalid(
        "[[step]]\nname = \"a\"\nmatrix_from = \"missing.txt\"\nrun = \"true\"\n",
        "cannot read the matrix file `missing.txt`",
        "stepwise.toml:3:15",
    );
    invalid(
        "[[step]]\nname = \"a\"\nmatrix = { x = [1] }\nrun = \"true\"\n[[step]]\nname = \"b\"\nafter = [\"a[x=9]\"]\nrun = \"true\"\n",
        "no expansion of `a` has those values",
        "stepwise.toml:7:10",
    );
    invalid(
        "[[step]]\nname = \"a\"\nmatrix = { x = [\"p/q\"] }\nrun = \"true\"\nfor_each = \"raw/*\"\n",
        "`for_each` cannot be combined with `matrix`",
        "stepwise.toml:",
    );
}

#[test]
fn braces_in_plain_steps_are_left_alone() {
    let space =
        Space::with("[[step]]\nname = \"a\"\nrun = \"echo '{x}' ${HOME:+set} > out.txt\"\n");
    space.run(&["run"]).success();
    assert_eq!(space.read("out.txt"), "{x} set\n");
}

#[test]
fn an_expansion_named_after_a_path_has_its_own_log() {
    let space = Space::with(
        "[[step]]\nname = \"show\"\nfor_each = \"raw/*.txt\"\nrun = \"cat {path}; exit 1\"\n",
    );
    space.write("raw/a.txt", "content of a\n");
    space.run(&["run"]).code(1).stderr_has("  | content of a");
    assert!(space.exists(".stepwise/logs/show[path=raw%2Fa.txt].1.log"));
    space
        .run(&["log", "show[path=raw/a.txt]"])
        .success()
        .stdout_has("content of a");
}

/// Two per-sample chains written as `{sample}-fetch` and `{sample}-parse`:
/// each template is known by the rest of its name.
const NAMED_AFTER_THE_VALUE: &str = r#"
[[step]]
name = "{s}-fetch"
matrix = { s = ["a", "b"] }
after = []
run = "echo {s}-fetch >> ran"

[[step]]
name = "{s}-parse"
matrix = { s = ["a", "b"] }
after = []
run = "echo {s}-parse >> ran"
"#;

#[test]
fn a_name_that_starts_with_a_placeholder_names_its_template_by_the_rest() {
    let space = Space::with(NAMED_AFTER_THE_VALUE);
    let plan = space.run(&["plan"]);
    plan.success();
    let rows: Vec<&str> = plan.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "one row per template:\n{}", plan.stdout);
    assert!(
        rows[0].contains("fetch") && rows[0].contains("2 steps"),
        "{}",
        plan.stdout
    );
    assert!(
        rows[1].contains("parse") && rows[1].contains("2 steps"),
        "{}",
        plan.stdout
    );

    space
        .run(&["status"])
        .success()
        .stdout_has("fetch (2 steps)")
        .stdout_has("parse (2 steps)");
    let dot = space.run(&["graph"]);
    dot.success()
        .stdout_has("subgraph \"cluster_fetch\"")
        .stdout_has("label=\"fetch (2)\"")
        .stdout_has("subgraph \"cluster_parse\"");
    assert!(!dot.stdout.contains("\"cluster_\""), "{}", dot.stdout);

    // `stepwise run fetch` runs every expansion of `{s}-fetch`, and only those.
    space.run(&["run", "fetch"]).success();
    let mut ran = space.ran();
    ran.sort();
    assert_eq!(ran, ["a-fetch", "b-fetch"]);
}

#[test]
fn after_names_a_template_whose_name_starts_with_a_placeholder() {
    let space = Space::with(
        r#"
[[step]]
name = "{s}-fetch"
matrix = { s = ["a", "b"] }
run = "echo {s}-fetch >> ran"

[[step]]
name = "report"
after = ["fetch"]
run = "echo report >> ran"
"#,
    );
    space.run(&["run", "-j1"]).success();
    let ran = space.ran();
    assert_eq!(ran.last().map(String::as_str), Some("report"), "{ran:?}");
    assert_eq!(ran.len(), 3, "{ran:?}");
}

#[test]
fn templates_that_differ_after_their_placeholder_are_different_templates() {
    let space = Space::with(
        r#"
[[step]]
name = "qc-{s}-raw"
matrix = { s = ["a", "b"] }
after = []
run = "echo qc-{s}-raw >> ran"

[[step]]
name = "qc-{s}-trimmed"
matrix = { s = ["a"] }
after = []
run = "echo qc-{s}-trimmed >> ran"

[[step]]
name = "{s}"
matrix = { s = ["solo"] }
after = ["qc-trimmed"]
run = "echo {s} >> ran"
"#,
    );
    space
        .run(&["status"])
        .success()
        .stdout_has("qc-raw (2 steps)")
        .stdout_has("qc-trimmed (1 steps)");
    // A name that is nothing but placeholders: the template is its name as written.
    space.run(&["run", "{s}"]).success();
    assert_eq!(space.ran(), ["qc-a-trimmed", "solo"]);
}

const SCORE_BY_COLUMN: &str = r#"
[[step]]
name = "score"
matrix_from = { file = "table.csv", column = "sample" }
run = "echo 'score-{sample}' >> ran"
"#;

#[test]
fn a_csv_column_is_read_as_csv_with_quoted_fields_a_quoted_header_and_a_bom() {
    let space = Space::with(SCORE_BY_COLUMN);
    // As a spreadsheet saves it: a byte order mark, quotes, CRLF line ends.
    space.write(
        "table.csv",
        "\u{feff}\"sample\",\"reads\"\r\ns1,10\r\n\"s,2\",20\r\n\"s 3\",\"30\"\r\n",
    );
    space
        .run(&["plan", "--expand"])
        .success()
        .stdout_has("score[sample=s1]")
        .stdout_has("score[sample=s,2]")
        .stdout_has("score[sample=s 3]");
    space.run(&["run", "-j1"]).success();
    let mut ran = space.ran();
    ran.sort();
    assert_eq!(ran, ["score-s 3", "score-s,2", "score-s1"]);

    // A changed file is read again, not taken from the compiled pipeline.
    space.write(
        "table.csv",
        "\u{feff}\"sample\",\"reads\"\r\ns1,10\r\n\"s,2\",20\r\n\"s 3\",\"30\"\r\n\"s,4\",40\r\n",
    );
    space
        .run(&["run"])
        .success()
        .stderr_has("Resume plan: 3 done, 1 remaining");
    assert_eq!(space.ran_count("score-s,4"), 1);
}

#[test]
fn a_list_file_with_a_byte_order_mark_gives_clean_values() {
    let space = Space::with(
        "[[step]]\nname = \"greet\"\nmatrix_from = \"names.txt\"\nrun = \"echo hello-{item} >> ran\"\n",
    );
    space.write("names.txt", "\u{feff}ann\r\nbob\r\n");
    space.run(&["run", "-j1"]).success();
    assert_eq!(space.ran(), ["hello-ann", "hello-bob"]);
}

#[test]
fn a_csv_without_the_column_is_refused_with_its_header() {
    let space = Space::with(SCORE_BY_COLUMN);
    space.write("table.csv", "\u{feff}\"name\",\"reads, total\"\ns1,10\n");
    space
        .run(&["plan"])
        .code(2)
        .stderr_has("the matrix file `table.csv` has no column `sample`")
        .stderr_has("stepwise.toml:4:24")
        .stderr_has("its header is: `name`, `reads, total`");
    assert!(!space.exists(".stepwise"), "nothing written");
}

#[test]
fn a_per_file_step_over_a_long_non_ascii_file_name_runs_and_keeps_its_log() {
    // 30 CJK characters: 90 bytes of UTF-8, 270 once percent-encoded, more
    // than a file name can hold.
    let stem = "写真".repeat(15);
    let space = Space::with(
        "[[step]]\nname = \"thumb\"\nfor_each = \"raw/*.jpg\"\nrun = \"echo made {stem}; test -f fixed\"\n",
    );
    space.write(&format!("raw/{stem}.jpg"), "a picture\n");
    let step = format!("thumb[path=raw/{stem}.jpg]");

    let out = space.run(&["run"]);
    out.code(1).stderr_has(&format!("  | made {stem}"));
    assert!(!out.stderr.contains("too long"), "{}", out.stderr);
    let logs = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(space.join(".stepwise/logs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    let first = logs();
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0].len() <= 255, "{first:?}");
    assert!(
        first[0].starts_with("thumb[path=raw%2F%E5%86%99%E7%9C%9F") && first[0].ends_with(".1.log"),
        "{first:?}"
    );
    space
        .run(&["log", &step])
        .success()
        .stdout_has(&format!("made {stem}"));

    space.write("fixed", "");
    space.run(&["run"]).success();
    space
        .run(&["status", "--expand"])
        .success()
        .stdout_has(".stepwise/logs/thumb[path=raw%2F%E5%86%99");
    // `gc` drops the failed attempt's log and keeps the one it still holds.
    space.run(&["gc"]).success();
    let kept = logs();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].ends_with(".2.log"), "{kept:?}");
    space
        .run(&["log", &step])
        .success()
        .stdout_has(&format!("made {stem}"));
}

#[test]
fn a_file_name_with_glob_characters_is_that_file_as_an_input() {
    // `{path}` from `for_each` names the file it found; `[1]` and `?` in it
    // are not a pattern. Nor in a path written by hand that exists.
    let space = Space::with(
        r#"
[[step]]
name = "t"
for_each = "raw/*.txt"
inputs = ["{path}"]
run = "cat \"{path}\" >> ran"

[[step]]
name = "hand"
inputs = ["report[v2].csv"]
run = "echo hand >> ran"
after = []
"#,
    );
    space.write("raw/img[1].txt", "t1\n");
    space.write("raw/b?.txt", "t2\n");
    space.write("report[v2].csv", "r\n");
    space.write("reportv.csv", "not it\n");
    space.run(&["run"]).success();
    let mut ran = space.ran();
    ran.sort();
    assert_eq!(ran, ["hand", "t1", "t2"]);
    // Another file the characters would match as a pattern changes nothing.
    space.write("raw/bX.txt", "t3\n");
    space.write("report2.csv", "not it either\n");
    let plan = space.plan_json(&[]);
    assert_eq!(
        plan["remaining"], 1,
        "only the new expansion t[path=raw/bX.txt]: {plan}"
    );
    let why = space.run(&["why", "t[path=raw/b?.txt]"]);
    why.success().stdout_has("done");
}

/// Ten lists of ten values: 10^10 expansions, in a 300-byte file. Counted
/// before anything is made, so the refusal comes at once (it used to grow to
/// 5.9 GB in 14 s and abort).
#[test]
fn a_matrix_of_ten_billion_expansions_is_refused_at_once_naming_the_template() {
    let lists: Vec<String> = (0..10)
        .map(|i| format!("v{i} = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"))
        .collect();
    let toml = format!(
        "[[step]]\nname = \"bomb\"\nmatrix = {{ {} }}\nrun = \"echo x >> ran\"\n",
        lists.join(", ")
    );
    let space = Space::with(&toml);
    for command in ["plan", "run"] {
        let t = std::time::Instant::now();
        let out = space.run(&[command]);
        // A loose bound: expanding would take minutes and gigabytes.
        assert!(t.elapsed() < std::time::Duration::from_secs(10));
        out.code(2)
            .stderr_has(
                "step `bomb` would expand to 10,000,000,000 steps (10 × 10 × 10 × 10 × 10 × 10 × 10 × 10 × 10 × 10 combinations), over the limit of 1,000,000 expansions per pipeline",
            )
            .stderr_has("stepwise.toml:3:1")
            .stderr_has("[pipeline] max_expansions = N");
        assert!(space.ran().is_empty());
        assert!(!space.exists(".stepwise"), "nothing written");
    }
}

/// `[pipeline] max_expansions` is a cap on every template together, and
/// raises (or lowers) the default of 1,000,000.
#[test]
fn max_expansions_caps_the_whole_pipeline_and_a_key_raises_it() {
    let two = "[[step]]\nname = \"a\"\nmatrix = { x = [1, 2, 3], y = [1, 2, 3] }\nrun = \"true\"\n\n\
               [[step]]\nname = \"b\"\nfor_each = \"raw/*.txt\"\nrun = \"true\"\n\n\
               [[step]]\nname = \"c\"\nafter = [\"b\"]\nrun = \"true\"\n";
    let with_limit = |limit: &str| format!("[pipeline]\nmax_expansions = {limit}\n\n{two}");
    let space = Space::with(&with_limit("8"));
    for f in ["raw/1.txt", "raw/2.txt"] {
        space.write(f, "");
    }
    // One template over the limit on its own.
    space
        .run(&["plan"])
        .code(2)
        .stderr_has("step `a` would expand to 9 steps (3 × 3 combinations), over the limit of 8 expansions per pipeline")
        .stderr_has("stepwise.toml:6:1");
    // Each within it, both together over it: the one that crosses it is named.
    space.write("stepwise.toml", &with_limit("10"));
    let out = space.run(&["plan"]);
    out.code(2)
        .stderr_has("step `b` would expand to 2 steps, bringing the pipeline's expansions to 11, over the limit of 10 expansions per pipeline")
        .stderr_has("stepwise.toml:11:1");
    // Only that error: `c`'s `after = ["b"]` is not reported on top of it.
    assert_eq!(out.stderr.matches("error:").count(), 1, "{}", out.stderr);
    assert!(!space.exists(".stepwise"), "nothing written");
    space.write("stepwise.toml", &with_limit("11"));
    assert_eq!(space.plan_json(&[])["remaining"], 12);
    space.write("stepwise.toml", &with_limit("0"));
    space
        .run(&["plan"])
        .code(2)
        .stderr_has("`max_expansions` must be a positive integer");
}

/// N steps each taking the outputs of N others hold N² paths: a small file
/// could fill memory with them as with a matrix. They are counted before
/// any is copied, against ten per allowed expansion.
#[test]
fn outputs_taken_by_every_expansion_are_capped_like_expansions() {
    let values: Vec<String> = (0..40).map(|i| i.to_string()).collect();
    let toml = |limit: usize| {
        format!(
            "[pipeline]\nmax_expansions = {limit}\n\n\
             [[step]]\nname = \"a\"\nmatrix = {{ i = [{v}] }}\nrun = \"echo {{i}} > a{{i}}\"\noutputs = [\"a{{i}}\"]\n\n\
             [[step]]\nname = \"b-{{j}}\"\nmatrix = {{ j = [{v}] }}\ninputs = [\"{{a.outputs}}\"]\nrun = \"cat {{a.outputs}} > b{{j}}\"\n",
            v = values.join(", ")
        )
    };
    // 40 steps × 40 outputs, in `inputs` and in `run`: 3,200 paths.
    let space = Space::with(&toml(100));
    let out = space.run(&["run"]);
    out.code(2)
        .stderr_has("`{a.outputs}` in step `b-{j}` brings the paths put in place of `{step.outputs}` to more than 1,000, the limit (10 per allowed expansion)")
        .stderr_has("[pipeline] max_expansions = N");
    assert_eq!(out.stderr.matches("error:").count(), 1, "{}", out.stderr);
    assert!(!space.exists(".stepwise"), "nothing written");
    space.write("stepwise.toml", &toml(320));
    assert_eq!(space.plan_json(&[])["remaining"], 80);
}
