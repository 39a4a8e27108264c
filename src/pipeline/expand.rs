//! Matrix and per-file steps: one `[[step]]` written once, expanded into a
//! step per combination of values or per matching file.
//!
//! Placeholders: in a template step, `{var}` is replaced by the value of a
//! matrix variable (or `{path}`, `{stem}`, `{name}`, `{dir}`, `{ext}` for
//! `for_each`) in `name`, `run`, `dir`, `env` values, `inputs`, `outputs` and
//! `after`; `{{` and `}}` stand for literal braces, and `${...}` is left to
//! the shell. In any step, `{step.outputs}` is replaced by the declared
//! outputs of a step, or of every expansion of a template (in `run` as
//! shell words, in `inputs` as one input each). Expanded steps are named
//! `template[var=value,...]` (variables in name order), unless the
//! template's `name` holds placeholders itself.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{Cx, RawPipeline, RawStep, name_problem};
use crate::fingerprint::Digest;

/// How a template step expands, as written.
#[derive(Clone, Debug)]
pub(super) struct TemplateSpec {
    pub matrix: Vec<(Spanned<String>, Vec<String>)>,
    pub matrix_from: Option<MatrixFrom>,
    pub for_each: Option<Spanned<String>>,
    /// The `matrix`/`for_each` key, for messages.
    pub span: Range<usize>,
    /// One of its keys was refused (an empty matrix, an invalid glob): it
    /// expands to nothing, so its placeholders are not reported as unknown
    /// on top of the error that says why.
    pub broken: bool,
}

/// `matrix_from`: the values of one variable, read from a file.
#[derive(Clone, Debug)]
pub(super) struct MatrixFrom {
    pub file: Spanned<String>,
    /// For a CSV file: the column to take (by its header).
    pub column: Option<String>,
    /// The variable's name: `name`, else the column, else `item`.
    pub var: String,
}

/// What an expanded step was made from.
#[derive(Clone, Debug)]
pub(super) struct Expanded {
    /// The template's name: what `after` and the command line call it.
    pub template: String,
    /// The template's `name` as written (`call-{sample}`), for messages.
    pub written: String,
    /// The `(variable, value)` pairs of this expansion.
    pub values: Vec<(String, String)>,
}

/// Something on disk an expansion depended on, with its digest when the
/// pipeline was compiled: a change means expanding again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpansionInput {
    /// A `matrix_from` file, by absolute path, and its content's digest.
    File(PathBuf, [u8; 16]),
    /// A `for_each` pattern, absolute, and the digest of what it matched.
    Glob(String, [u8; 16]),
}

impl ExpansionInput {
    /// Whether it still reads as it did.
    pub fn is_current(&self) -> bool {
        match self {
            ExpansionInput::File(path, digest) => {
                std::fs::read(path).is_ok_and(|bytes| Digest::of(&bytes).0 == *digest)
            }
            ExpansionInput::Glob(pattern, digest) => {
                glob_listing(pattern).is_ok_and(|paths| listing_digest(&paths).0 == *digest)
            }
        }
    }
}

/// Whether `name` can be a matrix variable.
pub(super) fn is_variable(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `align[sample=s1,fold=2]` as `("align", [("sample", "s1"), ("fold", "2")])`.
pub fn parse_selector(text: &str) -> Option<(String, Vec<(String, String)>)> {
    let open = text.find('[')?;
    let inner = text[open + 1..].strip_suffix(']')?;
    let mut pairs = Vec::new();
    for part in inner.split(',') {
        let (k, v) = part.split_once('=')?;
        pairs.push((k.trim().to_string(), v.trim().to_string()));
    }
    Some((text[..open].to_string(), pairs))
}

/// The name of an expansion when the template's name has no placeholders.
fn default_name(template: &str, values: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = values.iter().collect();
    sorted.sort();
    let inner: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{template}[{}]", inner.join(","))
}

/// The template's own name when its `name` holds placeholders: the name
/// with its placeholders taken out, and the `-`, `_` or `.` they leave
/// doubled or at either end with them (`call-{sample}` and `{sample}-call`
/// are the template `call`, `qc-{sample}-raw` is `qc-raw`). A name that is
/// nothing but placeholders and separators (`{sample}`) is its own
/// template's name, as written, so a template's name is never empty.
fn template_name(name: &str) -> String {
    const SEPARATORS: [char; 3] = ['-', '_', '.'];
    let mut out = String::with_capacity(name.len());
    // Whether a placeholder was just taken out.
    let mut after_placeholder = false;
    let mut rest = name;
    while !rest.is_empty() {
        let (piece, placeholder_end) = match rest.find('{') {
            Some(open) => match rest[open..].find('}') {
                Some(close) => (&rest[..open], Some(open + close + 1)),
                None => (rest, None),
            },
            None => (rest, None),
        };
        let piece = if after_placeholder && (out.is_empty() || out.ends_with(SEPARATORS)) {
            piece.trim_start_matches(SEPARATORS)
        } else {
            piece
        };
        out.push_str(piece);
        match placeholder_end {
            Some(end) => {
                rest = &rest[end..];
                after_placeholder = true;
            }
            None => break,
        }
    }
    let out = out.trim_end_matches(SEPARATORS);
    if out.is_empty() {
        name.to_string()
    } else {
        out.to_string()
    }
}

enum Mode {
    /// A template step: every `{var}` must be a variable.
    Template,
    /// After expansion, any step: only `{step.outputs}`.
    Outputs,
}

/// Replaces placeholders in `text`. `vars` are the expansion's values;
/// `outputs` gives a step's or template's outputs, already as text.
fn substitute(
    text: &str,
    vars: &[(String, String)],
    mode: &Mode,
    outputs: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if matches!(mode, Mode::Template) && (rest.starts_with("{{") || rest.starts_with("}}")) {
            out.push(bytes[i] as char);
            i += 2;
            continue;
        }
        if rest.starts_with("${") {
            out.push_str("${");
            i += 2;
            continue;
        }
        if bytes[i] == b'{'
            && let Some(end) = rest.find('}')
        {
            let inner = &rest[1..end];
            if let Some(step) = inner.strip_suffix(".outputs")
                && !step.is_empty()
                && name_problem(step.split('[').next().unwrap_or(step)).is_none()
            {
                match outputs(step) {
                    Some(list) => out.push_str(&list),
                    None if matches!(mode, Mode::Template) => out.push_str(&rest[..=end]),
                    None => {
                        return Err(format!("`{{{inner}}}` names no step or template `{step}`"));
                    }
                }
                i += end + 1;
                continue;
            }
            if matches!(mode, Mode::Template) && is_variable(inner) {
                match vars.iter().find(|(k, _)| k == inner) {
                    Some((_, v)) => out.push_str(v),
                    None => {
                        let known: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
                        return Err(format!(
                            "unknown placeholder `{{{inner}}}`; the variables here are: {}",
                            known.join(", ")
                        ));
                    }
                }
                i += end + 1;
                continue;
            }
        }
        let ch = rest.chars().next().expect("not at the end");
        out.push(ch);
        i += ch.len_utf8();
    }
    Ok(out)
}

fn glob_listing(pattern: &str) -> Result<Vec<PathBuf>, String> {
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    let mut paths = Vec::new();
    for entry in glob::glob_with(pattern, options).map_err(|e| e.msg.to_string())? {
        let path = entry.map_err(|e| format!("cannot read {}", e.path().display()))?;
        if path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

fn listing_digest(paths: &[PathBuf]) -> Digest {
    let mut h = blake3::Hasher::new();
    for p in paths {
        h.update(p.as_os_str().as_encoded_bytes());
        h.update(b"\0");
    }
    Digest::from_blake3(&h.finalize())
}

/// How many paths `{step.outputs}` may put into steps, in all, per
/// expansion `[pipeline] max_expansions` allows: 10,000,000 by default, a
/// fan-in of 3,000 outputs into 3,000 steps (about 3 GB to plan).
const PATHS_PER_EXPANSION: u128 = 10;

/// The step or template names of the `{name.outputs}` placeholders in
/// `text`, one per occurrence.
fn outputs_named(text: &str) -> impl Iterator<Item = &str> {
    // Each search back stops at the previous match: linear in `text`.
    let mut from = 0;
    text.match_indices(".outputs}")
        .filter_map(move |(end, found)| {
            let start = std::mem::replace(&mut from, end + found.len());
            let open = start + text[start..end].rfind('{')?;
            let name = &text[open + 1..end];
            (!name.is_empty() && !name.contains('}')).then_some(name)
        })
}

/// `10000000000` as `10,000,000,000`.
fn thousands(n: u128) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() * 4 / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A shell word: left alone if plain, else single-quoted.
fn shell_word(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A path as seen from `dir`: relative when inside it, else absolute.
fn seen_from(path: &Path, dir: &Path) -> String {
    path.strip_prefix(dir).unwrap_or(path).display().to_string()
}

impl Cx<'_> {
    /// Reads a `matrix_from` file's values.
    fn matrix_from_values(
        &mut self,
        from: &MatrixFrom,
        dir: &Path,
    ) -> Option<(Vec<String>, PathBuf, Vec<u8>)> {
        let path = dir.join(from.file.get_ref());
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                self.error_help(
                    from.file.span(),
                    format!("cannot read the matrix file `{}`: {e}", from.file.get_ref()),
                    "`matrix_from` names a file relative to the step's dir, one value per line (or a CSV with `column`)",
                );
                return None;
            }
        };
        let text = String::from_utf8_lossy(&bytes);
        // A byte order mark, as some editors and spreadsheets write, is not
        // part of the first value (or of the first column's name).
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let values: Vec<String> = match &from.column {
            None => text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from)
                .collect(),
            Some(column) => self.csv_column(from, column, text)?,
        };
        if values.is_empty() {
            self.error_help(
                from.file.span(),
                format!(
                    "the matrix file `{}` holds no values, so the step would expand to nothing",
                    from.file.get_ref()
                ),
                "add values to it (one per line), or remove the step",
            );
            return None;
        }
        Some((values, path, bytes))
    }

    /// The values of one column of a CSV file (RFC 4180: quoted fields may
    /// hold commas, quotes and line breaks), found by its header; empty
    /// values are left out, and so are blank lines and lines starting with
    /// `#`.
    fn csv_column(&mut self, from: &MatrixFrom, column: &str, text: &str) -> Option<Vec<String>> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .comment(Some(b'#'))
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let bad = |cx: &mut Cx<'_>, e: csv::Error| {
            let line = e
                .position()
                .map_or(String::new(), |p| format!(", line {}", p.line()));
            cx.error_help(
                from.file.span(),
                format!("cannot read the matrix file `{}` as CSV{line}: {e}", from.file.get_ref()),
                "`column` takes the values of one column of a CSV file whose first line names the columns",
            );
        };
        let header = match reader.headers() {
            Ok(header) => header.clone(),
            Err(e) => {
                bad(self, e);
                return None;
            }
        };
        let Some(at) = header.iter().position(|h| h == column) else {
            let names: Vec<String> = header.iter().map(|h| format!("`{h}`")).collect();
            self.error_help(
                from.file.span(),
                format!(
                    "the matrix file `{}` has no column `{column}`",
                    from.file.get_ref()
                ),
                format!("its header is: {}", names.join(", ")),
            );
            return None;
        };
        let mut values = Vec::new();
        for record in reader.records() {
            match record {
                Ok(record) => {
                    values.extend(record.get(at).filter(|v| !v.is_empty()).map(String::from))
                }
                Err(e) => {
                    bad(self, e);
                    return None;
                }
            }
        }
        Some(values)
    }
}

/// Expands every template step of `raw`, and substitutes `{step.outputs}`
/// everywhere. Reports problems into `cx`; returns what the expansion read.
pub(super) fn expand(
    cx: &mut Cx<'_>,
    raw: RawPipeline,
    root: &Path,
) -> (RawPipeline, Vec<ExpansionInput>) {
    let mut inputs = Vec::new();
    let mut steps: Vec<RawStep> = Vec::with_capacity(raw.steps.len());
    let steps_in = raw.steps;
    let declared: Vec<String> = steps_in
        .iter()
        .filter(|s| s.template.is_some())
        .filter_map(|s| s.name.as_ref())
        .map(|n| {
            if n.get_ref().contains('{') {
                template_name(n.get_ref())
            } else {
                n.get_ref().clone()
            }
        })
        .collect();
    let limit = raw.max_expansions.unwrap_or(super::DEFAULT_MAX_EXPANSIONS);
    // Expansions made so far, over every template.
    let mut expansions: u128 = 0;
    let mut over_limit = false;
    let mut raw = RawPipeline {
        steps: Vec::new(),
        ..raw
    };
    for mut step in steps_in {
        // Taken out, not cloned: each expansion below starts as a clone of
        // the step, which must not carry every value of the matrix (that
        // made expanding N values cost N² string copies).
        let Some(spec) = step.template.take() else {
            steps.push(step);
            continue;
        };
        if spec.broken || over_limit {
            continue;
        }
        let dir = root.join(step.dir.as_deref().unwrap_or("."));
        // Variables and their values, in the order written.
        let mut vars: Vec<(String, Vec<String>)> = spec
            .matrix
            .iter()
            .map(|(k, v)| (k.get_ref().clone(), v.clone()))
            .collect();
        if let Some(from) = &spec.matrix_from {
            let Some((values, path, bytes)) = cx.matrix_from_values(from, &dir) else {
                continue;
            };
            if vars.iter().any(|(k, _)| *k == from.var) {
                cx.error_help(
                    from.file.span(),
                    format!(
                        "`matrix_from` defines `{}`, which `matrix` defines too",
                        from.var
                    ),
                    "give the file's values another name: matrix_from = { file = \"...\", name = \"other\" }",
                );
                continue;
            }
            inputs.push(ExpansionInput::File(path, Digest::of(&bytes).0));
            vars.push((from.var.clone(), values));
        }
        let mut combos: Vec<Vec<(String, String)>> = vec![Vec::new()];
        let mut listing = None;
        if let Some(pattern) = &spec.for_each {
            let full = format!(
                "{}/{}",
                glob::Pattern::escape(&dir.to_string_lossy()),
                pattern.get_ref()
            );
            let paths = match glob_listing(&full) {
                Ok(paths) => paths,
                Err(e) => {
                    cx.error_help(
                        pattern.span(),
                        format!("cannot expand `for_each = \"{}\"`: {e}", pattern.get_ref()),
                        "check the pattern and that its folders can be read",
                    );
                    continue;
                }
            };
            if paths.is_empty() {
                cx.error_help(
                    pattern.span(),
                    format!(
                        "`for_each = \"{}\"` matches no file, so the step would expand to nothing",
                        pattern.get_ref()
                    ),
                    format!("the pattern is relative to {}", dir.display()),
                );
                continue;
            }
            inputs.push(ExpansionInput::Glob(full, listing_digest(&paths).0));
            listing = Some(paths);
        }
        // Counted before anything is made: a few short lists multiply to
        // billions of steps, which would exhaust memory long before an error.
        let mut factors: Vec<usize> = listing.iter().map(Vec::len).collect();
        factors.extend(vars.iter().map(|(_, values)| values.len()));
        let count = factors
            .iter()
            .try_fold(1u128, |n, &f| n.checked_mul(f as u128));
        let before = expansions;
        expansions = count.map_or(u128::MAX, |c| before.saturating_add(c));
        if expansions > limit as u128 {
            let label = step
                .name
                .as_ref()
                .map_or_else(|| format!("#{}", step.entry + 1), |n| n.get_ref().clone());
            let made = match count {
                Some(c) => thousands(c),
                None => "more than 10^38".into(),
            };
            let how = if factors.len() > 1 {
                let shown: Vec<String> = factors.iter().map(|&f| thousands(f as u128)).collect();
                format!(" ({} combinations)", shown.join(" × "))
            } else {
                String::new()
            };
            let message = if before == 0 || count.is_none_or(|c| c > limit as u128) {
                format!(
                    "step `{label}` would expand to {made} steps{how}, over the limit of {} expansions per pipeline",
                    thousands(limit as u128)
                )
            } else {
                format!(
                    "step `{label}` would expand to {made} steps, bringing the pipeline's expansions to {}, over the limit of {} expansions per pipeline",
                    thousands(expansions),
                    thousands(limit as u128)
                )
            };
            cx.error_help(
                spec.span.clone(),
                message,
                "split the matrix into smaller ones, or raise the limit if you mean it: [pipeline] max_expansions = N",
            );
            // Nothing more is expanded: the first step over the limit is the
            // one to fix, and the rest could be as large. (They are left out
            // like any broken template: `after` naming them is not an error.)
            over_limit = true;
            continue;
        }
        if let Some(paths) = listing {
            combos = paths
                .iter()
                .map(|p| {
                    let rel = p.strip_prefix(&dir).unwrap_or(p);
                    let text = |s: Option<&std::ffi::OsStr>| {
                        s.map(|s| s.to_string_lossy().into_owned())
                            .unwrap_or_default()
                    };
                    vec![
                        ("path".to_string(), rel.display().to_string()),
                        ("stem".to_string(), text(rel.file_stem())),
                        ("name".to_string(), text(rel.file_name())),
                        (
                            "dir".to_string(),
                            rel.parent()
                                .map(|d| d.display().to_string())
                                .unwrap_or_default(),
                        ),
                        ("ext".to_string(), text(rel.extension())),
                    ]
                })
                .collect();
        }
        for (var, values) in &vars {
            combos = combos
                .into_iter()
                .flat_map(|combo| {
                    values.iter().map(move |v| {
                        let mut c = combo.clone();
                        c.push((var.clone(), v.clone()));
                        c
                    })
                })
                .collect();
        }
        let Some(name) = step.name.clone() else {
            continue;
        };
        let templated = name.get_ref().contains('{');
        let template = if templated {
            template_name(name.get_ref())
        } else {
            name.get_ref().clone()
        };
        // Only the variables that vary name the expansion (`for_each`'s path).
        let naming: Vec<&str> = if spec.for_each.is_some() {
            vec!["path"]
        } else {
            vars.iter().map(|(k, _)| k.as_str()).collect()
        };
        // Each expansion's name, and where it went in `steps` (its values
        // are there, for a message about a second expansion of that name).
        let mut seen: HashMap<String, usize, foldhash::fast::RandomState> =
            HashMap::with_capacity_and_hasher(combos.len(), Default::default());
        // Counted above: grown once, not by doubling a vector of large steps.
        steps.reserve(combos.len());
        for values in combos {
            let no_outputs = |_: &str| None;
            let sub = |cx: &mut Cx<'_>, text: &str, span: Range<usize>| match substitute(
                text,
                &values,
                &Mode::Template,
                &no_outputs,
            ) {
                Ok(t) => Some(t),
                Err(why) => {
                    cx.error_help(
                        span,
                        format!("{why} (in step `{}`)", name.get_ref()),
                        "write `{{` and `}}` for literal braces; `${VAR}` is left to the shell",
                    );
                    None
                }
            };
            let expanded_name = if templated {
                let Some(n) = sub(cx, name.get_ref(), name.span()) else {
                    break;
                };
                if let Some(problem) = name_problem(&n) {
                    cx.error_help(
                        name.span(),
                        format!(
                            "step name `{n}` (from `{}`) is invalid: {problem}",
                            name.get_ref()
                        ),
                        "the values put into a name may use letters, digits, `_`, `-` and `.`",
                    );
                    break;
                }
                n
            } else {
                let named: Vec<(String, String)> = values
                    .iter()
                    .filter(|(k, _)| naming.contains(&k.as_str()))
                    .cloned()
                    .collect();
                let n = default_name(&template, &named);
                if n.chars().any(|c| c.is_control()) {
                    cx.error_help(
                        spec.span.clone(),
                        format!(
                            "a value of step `{template}` holds a control character: {}",
                            n.escape_debug()
                        ),
                        "values name the expansions: use printable characters (rename the file, or change the value)",
                    );
                    break;
                }
                n
            };
            if let Some(&at) = seen.get(&expanded_name) {
                let previous = steps[at]
                    .expanded_from
                    .as_ref()
                    .map_or(&[][..], |e| &e.values[..]);
                let show = |v: &[(String, String)]| {
                    v.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                cx.error_help(
                    spec.span.clone(),
                    format!(
                        "two expansions of `{template}` are both named `{expanded_name}` (values {} and {})",
                        show(previous),
                        show(&values)
                    ),
                    "every expansion needs its own name: make the values distinct, or put every variable in `name`",
                );
                break;
            }
            seen.insert(expanded_name.clone(), steps.len());
            let mut s = step.clone();
            s.name = Some(Spanned::new(name.span(), expanded_name));
            s.run = match &step.run {
                Some(run) => match sub(cx, run, step.spans.run.clone()) {
                    Some(r) => Some(r),
                    None => break,
                },
                None => None,
            };
            if let Some(d) = &step.dir {
                s.dir = sub(cx, d, step.spans.dir.clone());
            }
            for (k, v) in s.env.iter_mut() {
                let span = step.spans.env.get(k).cloned().unwrap_or(step.span.clone());
                if let Some(t) = sub(cx, v, span) {
                    *v = t;
                }
            }
            // An input is a glob pattern, but a value put into it names a
            // file as it is: `raw/img[1].txt` from `for_each` must not match
            // `raw/img1.txt`, nor `b?.txt` every other `b` file.
            let literal: Vec<(String, String)> = values
                .iter()
                .map(|(k, v)| (k.clone(), glob::Pattern::escape(v)))
                .collect();
            for (i, input) in s.inputs.iter_mut().enumerate() {
                let span = step
                    .spans
                    .inputs
                    .get(i)
                    .cloned()
                    .unwrap_or(step.span.clone());
                match substitute(input, &literal, &Mode::Template, &no_outputs) {
                    Ok(t) => *input = t,
                    Err(why) => cx.error_help(
                        span,
                        format!("{why} (in step `{}`)", name.get_ref()),
                        "write `{{` and `}}` for literal braces; `${VAR}` is left to the shell",
                    ),
                }
            }
            for output in s.outputs.iter_mut() {
                if let Some(t) = sub(cx, output.get_ref(), output.span()) {
                    *output = Spanned::new(output.span(), t);
                }
            }
            if let Some(after) = &mut s.after {
                for a in after.iter_mut() {
                    if let Some(t) = sub(cx, a.get_ref(), a.span()) {
                        *a = Spanned::new(a.span(), t);
                    }
                }
            }
            s.expanded_from = Some(Expanded {
                template: template.clone(),
                written: name.get_ref().clone(),
                values,
            });
            steps.push(s);
        }
    }

    cx.unexpanded = declared
        .into_iter()
        .filter(|t| {
            !steps
                .iter()
                .any(|s| s.expanded_from.as_ref().is_some_and(|e| e.template == *t))
        })
        .collect();

    // `{step.outputs}`: the declared outputs of a step, or of every
    // expansion of a template, as absolute paths.
    let uses_outputs = steps.iter().any(|s| {
        s.run.as_deref().is_some_and(|r| r.contains(".outputs}"))
            || s.inputs.iter().any(|i| i.contains(".outputs}"))
    });
    if !uses_outputs {
        raw.steps = steps;
        return (raw, inputs);
    }
    // A template's expansions in name order, not matrix order, so that
    // reordering a matrix list changes no command.
    let mut by_template: BTreeMap<String, Vec<(String, Vec<PathBuf>)>> = BTreeMap::new();
    let mut produced: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for s in &steps {
        let dir = root.join(s.dir.as_deref().unwrap_or("."));
        let paths: Vec<PathBuf> = s.outputs.iter().map(|o| dir.join(o.get_ref())).collect();
        let name = s
            .name
            .as_ref()
            .map(|n| n.get_ref().clone())
            .unwrap_or_default();
        if let Some(Expanded { template, .. }) = &s.expanded_from {
            by_template
                .entry(template.clone())
                .or_default()
                .push((name.clone(), paths.clone()));
        }
        produced.entry(name).or_default().extend(paths);
    }
    for (template, mut expansions) in by_template {
        expansions.sort();
        produced.insert(
            template,
            expansions.into_iter().flat_map(|(_, p)| p).collect(),
        );
    }
    // Counted before any is copied: N steps each taking the N outputs of a
    // template hold N² paths (a few hundred bytes each), so a small file
    // could otherwise fill memory here as a matrix could above.
    let paths_limit = (limit as u128).saturating_mul(PATHS_PER_EXPANSION);
    let mut paths: u128 = 0;
    for s in &steps {
        let texts =
            s.run
                .iter()
                .map(|r| (r, s.spans.run.clone()))
                .chain(s.inputs.iter().enumerate().map(|(i, input)| {
                    (
                        input,
                        s.spans.inputs.get(i).cloned().unwrap_or(s.span.clone()),
                    )
                }));
        for (text, span) in texts {
            for name in outputs_named(text) {
                paths = paths.saturating_add(produced.get(name).map_or(0, |p| p.len() as u128));
                if paths > paths_limit {
                    let step = s.expanded_from.as_ref().map_or_else(
                        || {
                            s.name
                                .as_ref()
                                .map(|n| n.get_ref().clone())
                                .unwrap_or_default()
                        },
                        |e| e.written.clone(),
                    );
                    cx.error_help(
                        span,
                        format!(
                            "`{{{name}.outputs}}` in step `{step}` brings the paths put in place of `{{step.outputs}}` to more than {}, the limit ({PATHS_PER_EXPANSION} per allowed expansion)",
                            thousands(paths_limit)
                        ),
                        "take the outputs of fewer steps (a folder they all write to is one input), or raise the limit if you mean it: [pipeline] max_expansions = N",
                    );
                    raw.steps = Vec::new();
                    return (raw, inputs);
                }
            }
        }
    }
    let mut out_steps = Vec::with_capacity(steps.len());
    for mut s in steps {
        let dir = root.join(s.dir.as_deref().unwrap_or("."));
        if let Some(run) = &s.run
            && run.contains(".outputs}")
        {
            let words = |name: &str| {
                produced.get(name).map(|paths| {
                    paths
                        .iter()
                        .map(|p| shell_word(&seen_from(p, &dir)))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
            };
            match substitute(run, &[], &Mode::Outputs, &words) {
                Ok(r) => s.run = Some(r),
                Err(why) => cx.error_help(
                    s.spans.run.clone(),
                    why,
                    "`{step.outputs}` names a step or template of this file",
                ),
            }
        }
        if s.inputs.iter().any(|i| i.contains(".outputs}")) {
            let mut expanded = Vec::new();
            for (i, input) in s.inputs.iter().enumerate() {
                let span = s.spans.inputs.get(i).cloned().unwrap_or(s.span.clone());
                let whole = input
                    .strip_prefix('{')
                    .and_then(|x| x.strip_suffix(".outputs}"));
                match whole.and_then(|name| produced.get(name)) {
                    Some(paths) => expanded.extend(paths.iter().map(|p| seen_from(p, &dir))),
                    None if whole.is_some() => {
                        cx.error_help(
                            span,
                            format!(
                                "`{input}` names no step or template `{}`",
                                whole.unwrap_or("")
                            ),
                            "`{step.outputs}` names a step or template of this file",
                        );
                    }
                    None if input.contains(".outputs}") => cx.error_help(
                        span,
                        format!("`{input}`: a `{{step.outputs}}` input must be the whole entry"),
                        "write inputs = [\"{align.outputs}\"] to take every output as an input",
                    ),
                    None => expanded.push(input.clone()),
                }
            }
            s.inputs = expanded;
            s.spans.inputs.clear();
        }
        out_steps.push(s);
    }
    raw.steps = out_steps;
    (raw, inputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(text: &str, vars: &[(&str, &str)]) -> Result<String, String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        substitute(text, &vars, &Mode::Template, &|_| None)
    }

    #[test]
    fn placeholders_escapes_and_shell_variables() {
        assert_eq!(
            sub("align {sample} > {sample}.bam", &[("sample", "s1")]).unwrap(),
            "align s1 > s1.bam"
        );
        assert_eq!(
            sub("awk '{{print $1}}' ${HOME}/{x}", &[("x", "f")]).unwrap(),
            "awk '{print $1}' ${HOME}/f"
        );
        assert!(
            sub("{nope}", &[("sample", "s1")])
                .unwrap_err()
                .contains("unknown placeholder `{nope}`")
        );
        assert_eq!(
            sub("{ not a placeholder }", &[]).unwrap(),
            "{ not a placeholder }"
        );
    }

    #[test]
    fn outputs_placeholders_are_found_once_each() {
        let found: Vec<&str> =
            outputs_named("cat {a.outputs} {b[x=1].outputs} x.outputs} {}.outputs} {c.outputs}")
                .collect();
        assert_eq!(found, ["a", "b[x=1]", "c"]);
    }

    #[test]
    fn selectors_and_names() {
        assert_eq!(
            parse_selector("align[sample=s1,fold=2]"),
            Some((
                "align".into(),
                vec![("sample".into(), "s1".into()), ("fold".into(), "2".into())]
            ))
        );
        assert_eq!(parse_selector("align"), None);
        let values = vec![
            ("sample".to_string(), "s1".to_string()),
            ("fold".to_string(), "2".to_string()),
        ];
        assert_eq!(default_name("align", &values), "align[fold=2,sample=s1]");
        assert_eq!(template_name("align-{sample}"), "align");
        assert_eq!(template_name("align-{sample}-{fold}"), "align");
        assert_eq!(template_name("{s}-fetch"), "fetch");
        assert_eq!(template_name("{s}_{t}.fetch"), "fetch");
        assert_eq!(template_name("qc-{s}-raw"), "qc-raw");
        assert_eq!(template_name("qc_{s}.raw"), "qc_raw");
        assert_eq!(template_name("call-{s}"), template_name("call_{t}"));
        assert_eq!(template_name("a{s}b"), "ab");
        // Nothing but placeholders: the name as written, never empty.
        assert_eq!(template_name("{s}"), "{s}");
        assert_eq!(template_name("{a}.{b}"), "{a}.{b}");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("x/y.bam"), "x/y.bam");
    }
}
