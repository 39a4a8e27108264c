//! What the files on disk say about each step: its fingerprint components
//! (inputs hashed by content), which of its inputs and outputs are missing,
//! and the digest of what it produced for the steps that need it.
//!
//! This is the effectful half of fingerprinting; [`crate::fingerprint`] is
//! the pure half and [`crate::plan`](mod@crate::plan) decides from the facts gathered here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::fingerprint::{self, Components, Digest};
use crate::hash::FileHasher;
use crate::pipeline::{Pipeline, StepId};

/// A declared input that cannot be used right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingInput {
    /// The input as declared: a path or a glob, relative to the step's dir.
    pub pattern: String,
    /// "matches no file", "does not exist", or the read error.
    pub why: String,
}

/// The facts about one step, gathered from the disk at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepFacts {
    /// What the step is made of now; an input that cannot be read is left
    /// out (and listed in `missing_inputs`).
    pub components: Components,
    /// The fingerprint of `components`.
    pub fingerprint: Digest,
    /// Declared inputs that cannot be read now. A step with any has no
    /// trustworthy fingerprint: its attempt is recorded without one.
    pub missing_inputs: Vec<MissingInput>,
    /// Declared outputs that do not exist, as written in the pipeline file.
    pub missing_outputs: Vec<String>,
    /// What the step hands to the steps that need it: the content of its
    /// declared outputs when it declares some, else its fingerprint.
    pub product: Digest,
}

/// The facts for a pipeline's steps, kept current as a run goes on.
pub struct Survey {
    /// Hashes the files, through the stat cache; save it when done.
    pub hasher: FileHasher,
    facts: Vec<Option<StepFacts>>,
    /// The same for every step: hashed once.
    shell: Digest,
    dot: Digest,
    /// During [`Survey::survey`], what each input pattern named, by folder:
    /// N steps reading the same N files (a fan-in of outputs) look each up
    /// once, not N times. Nothing runs meanwhile, so no answer changes.
    listed: Option<Memo<Listing>>,
}

/// What an input pattern named: shared, not copied, by the steps that read it.
type Listing = Result<Rc<[PathBuf]>, String>;
/// Answers by folder, then pattern (a lookup allocates nothing).
pub(crate) type Memo<T> = HashMap<PathBuf, HashMap<String, T, Fast>, Fast>;
type Fast = foldhash::fast::RandomState;

impl Survey {
    /// A survey of `pipeline` that has gathered nothing yet.
    pub fn new(pipeline: &Pipeline, hasher: FileHasher) -> Survey {
        Survey {
            hasher,
            facts: vec![None; pipeline.steps.len()],
            shell: fingerprint::text_list(&pipeline.shell),
            dot: fingerprint::text("."),
            listed: None,
        }
    }

    /// Gathers the facts of every step in `scope`, dependencies first.
    pub fn survey(&mut self, pipeline: &Pipeline, scope: &[bool]) {
        // Nothing runs during this pass: folders stay put.
        self.hasher.batch(true);
        self.listed = Some(Memo::default());
        for id in pipeline.topological_order() {
            if scope[id.index()] {
                self.refresh(pipeline, id);
            }
        }
        self.listed = None;
        self.hasher.batch(false);
    }

    /// The latest facts per step (`None` for steps not surveyed).
    pub fn facts(&self) -> &[Option<StepFacts>] {
        &self.facts
    }

    /// The latest facts of one step, if it was surveyed.
    pub fn get(&self, id: StepId) -> Option<&StepFacts> {
        self.facts[id.index()].as_ref()
    }

    /// Gathers a step's facts again from the disk as it is now, using the
    /// latest products of its dependencies.
    pub fn refresh(&mut self, pipeline: &Pipeline, id: StepId) -> &StepFacts {
        let step = pipeline.step(id);
        let mut c = Components::default();
        c.insert("run", fingerprint::text(&step.run));
        c.insert("shell", self.shell);
        c.insert(
            "dir",
            step.dir.as_deref().map_or(self.dot, fingerprint::text),
        );
        for (key, value) in pipeline.env.iter().chain(&step.env) {
            // The step's value wins over the pipeline's: later insert.
            c.insert(format!("env:{key}"), fingerprint::text(value));
        }
        // Which secrets a step gets is part of what it is; their values are
        // not: a rotated token fetches the same data, and a hash of a secret
        // in the journal would let anyone holding the journal test guesses.
        if !step.secret_env.is_empty() {
            let mut names = step.secret_env.clone();
            names.sort();
            c.insert("secret_env", fingerprint::text_list(&names));
        }
        let dir = pipeline.step_dir(id);
        let mut missing_inputs = Vec::new();
        // During a survey, what the patterns named under this folder so far
        // (taken out for the loop, put back after it).
        let mut known = self
            .listed
            .as_mut()
            .filter(|_| !step.inputs.is_empty())
            .map(|listed| std::mem::take(listed.entry(dir.clone()).or_default()));
        for pattern in &step.inputs {
            let listing = match &mut known {
                Some(known) => match known.get(pattern.as_str()) {
                    Some(listing) => listing.clone(),
                    None => {
                        let listing = expand(&dir, pattern).map(Rc::from);
                        known.insert(pattern.clone(), listing.clone());
                        listing
                    }
                },
                None => expand(&dir, pattern).map(Rc::from),
            };
            match listing {
                Ok(paths) if paths.is_empty() => missing_inputs.push(MissingInput {
                    pattern: pattern.clone(),
                    why: if is_glob(pattern) {
                        "matches no file".into()
                    } else {
                        "does not exist".into()
                    },
                }),
                Ok(paths) => {
                    // What a pattern matches of the step's own outputs is
                    // what it writes, not what it reads: counting it would
                    // rerun the step once after every success (`*.csv` with
                    // `outputs = ["summary.csv"]`). Still, a match is a match
                    // for the pattern not to be missing. A path named as
                    // written (`expand` returns the pattern itself) stays an
                    // input: a file updated in place is both.
                    let own: &[PathBuf] = if is_glob(pattern) {
                        pipeline.output_paths(id)
                    } else {
                        &[]
                    };
                    for rel in paths.iter() {
                        if !own.is_empty() && rel.as_os_str() != pattern.as_str() {
                            let path = normalize(&dir.join(rel));
                            if own.iter().any(|o| path.starts_with(o)) {
                                continue;
                            }
                        }
                        match self.hasher.hash_path(&dir.join(rel)) {
                            Ok(Some(d)) => c.insert(format!("input:{}", rel.display()), d),
                            Ok(None) => missing_inputs.push(MissingInput {
                                pattern: pattern.clone(),
                                why: format!("{} disappeared", rel.display()),
                            }),
                            Err(e) => missing_inputs.push(MissingInput {
                                pattern: pattern.clone(),
                                why: format!("cannot read {}: {e}", rel.display()),
                            }),
                        }
                    }
                }
                Err(why) => missing_inputs.push(MissingInput {
                    pattern: pattern.clone(),
                    why,
                }),
            }
        }
        if let (Some(listed), Some(known)) = (&mut self.listed, known) {
            listed.insert(dir, known);
        }
        for dep in &step.after {
            let product = self.product_of(pipeline, *dep);
            c.insert(format!("dep:{}", pipeline.step(*dep).name), product);
        }
        let fingerprint = c.fingerprint();
        let (missing_outputs, outputs_digest) = self.outputs(pipeline, id, false);
        let facts = StepFacts {
            components: c,
            fingerprint,
            missing_inputs,
            missing_outputs,
            product: outputs_digest.unwrap_or(fingerprint),
        };
        self.facts[id.index()] = Some(facts);
        self.facts[id.index()].as_ref().expect("just set")
    }

    /// Re-reads a step's outputs after it ran, so the steps that need it see
    /// what it wrote.
    pub fn refresh_product(&mut self, pipeline: &Pipeline, id: StepId) {
        self.refresh_product_with(pipeline, id, false);
    }

    /// Like [`Survey::refresh_product`], right after the step's processes
    /// ended: nothing can still be writing its outputs, so their hashes can
    /// be cached however recent they are.
    pub fn refresh_product_settled(&mut self, pipeline: &Pipeline, id: StepId) {
        self.refresh_product_with(pipeline, id, true);
    }

    fn refresh_product_with(&mut self, pipeline: &Pipeline, id: StepId, settled: bool) {
        let (missing, digest) = self.outputs(pipeline, id, settled);
        if let Some(facts) = &mut self.facts[id.index()] {
            facts.missing_outputs = missing;
            facts.product = digest.unwrap_or(facts.fingerprint);
        }
    }

    fn product_of(&mut self, pipeline: &Pipeline, id: StepId) -> Digest {
        if self.facts[id.index()].is_none() {
            self.refresh(pipeline, id);
        }
        self.facts[id.index()]
            .as_ref()
            .map_or_else(|| Digest([0; 16]), |f| f.product)
    }

    /// Which declared outputs are missing, and the digest of all of them
    /// (`None` when the step declares none).
    fn outputs(
        &mut self,
        pipeline: &Pipeline,
        id: StepId,
        settled: bool,
    ) -> (Vec<String>, Option<Digest>) {
        let step = pipeline.step(id);
        if step.outputs.is_empty() {
            return (Vec::new(), None);
        }
        let paths = pipeline.output_paths(id);
        let mut missing = Vec::new();
        let mut hashed = Vec::with_capacity(paths.len());
        for (written, path) in step.outputs.iter().zip(paths) {
            let result = if settled {
                self.hasher.hash_settled(path)
            } else {
                self.hasher.hash_path(path)
            };
            let digest = match result {
                Ok(Some(d)) => d,
                Ok(None) => {
                    missing.push(written.clone());
                    Digest::of(b"missing")
                }
                Err(e) => Digest::of(format!("unreadable: {e}").as_bytes()),
            };
            hashed.push((written.as_str(), digest));
        }
        (missing, Some(fingerprint::outputs_digest(&hashed)))
    }
}

/// Removes a step's declared outputs (after a failed attempt, so that a
/// half-written file never looks complete). Returns what could not be
/// removed, with why.
pub fn remove_outputs(pipeline: &Pipeline, id: StepId) -> Vec<(PathBuf, std::io::Error)> {
    let mut failed = Vec::new();
    // Paths come from `output_paths`, checked to lie inside the pipeline's
    // folder and outside the state dir as written; the folder they are in is
    // checked again here with symlinks resolved, so a link to elsewhere can
    // never make us delete there.
    let root = std::fs::canonicalize(&pipeline.root).unwrap_or_else(|_| pipeline.root.clone());
    // An output that is, or holds, one of the step's own inputs (a file
    // updated in place, a folder it reads from and writes to) is kept: the
    // input is data the step did not make, and may exist nowhere else.
    let dir = pipeline.step_dir(id);
    let inputs: Vec<PathBuf> = pipeline
        .step(id)
        .inputs
        .iter()
        .flat_map(|pattern| expand(&dir, pattern).unwrap_or_default())
        .map(|rel| normalize(&dir.join(rel)))
        .collect();
    for path in pipeline.output_paths(id).iter().cloned() {
        let Some(parent) = path.parent() else {
            continue;
        };
        let normal = normalize(&path);
        if let Some(input) = inputs.iter().find(|i| i.starts_with(&normal)) {
            let how = if *input == normal { "is" } else { "holds" };
            let shown = input.strip_prefix(&dir).unwrap_or(input);
            failed.push((
                path.clone(),
                std::io::Error::other(format!("it {how} the step's own input {}", shown.display())),
            ));
            continue;
        }
        match std::fs::canonicalize(parent) {
            // However it is spelled (`here/.stepwise` through `here -> .`,
            // `st/journal.jsonl` through `st -> .stepwise`), a path that
            // really is, or lies in, a state dir is never removed: it holds
            // what is done.
            Ok(real) if in_state_dir(&root, &real, path.file_name()) => {
                failed.push((
                    path.clone(),
                    std::io::Error::other(format!(
                        "it is really {}, inside stepwise's state dir",
                        real.join(path.file_name().unwrap_or_default()).display()
                    )),
                ));
                continue;
            }
            Ok(real) if real.starts_with(&root) => {}
            Ok(real) => {
                failed.push((
                    path.clone(),
                    std::io::Error::other(format!(
                        "not removed: it is really in {}, outside the pipeline's folder",
                        real.display()
                    )),
                ));
                continue;
            }
            // Its folder does not exist: nothing to remove.
            Err(_) => continue,
        }
        let result = match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            failed.push((path, e));
        }
    }
    failed
}

/// Whether `parent/name`, with `parent` a real (resolved) folder under
/// `root`, is a state dir or inside one: any folder of it below `root` is
/// named like a state dir (`.stepwise`, `.stepwise-NAME`).
fn in_state_dir(root: &Path, parent: &Path, name: Option<&std::ffi::OsStr>) -> bool {
    let Ok(below) = parent.strip_prefix(root) else {
        return false;
    };
    below
        .components()
        .map(|c| c.as_os_str())
        .chain(name)
        .filter_map(|c| c.to_str())
        .any(crate::state::dir::is_state_dir_name)
}

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// The paths, relative to `dir`, that an input pattern names right now, in
/// sorted order. A plain path names itself if it exists.
pub fn expand(dir: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    // A path that exists as written is that file, even if it holds glob
    // characters (`report[v2].csv`): people name files, rarely patterns
    // that happen to be file names too.
    if !is_glob(pattern) || dir.join(pattern).exists() {
        let rel = PathBuf::from(pattern);
        return Ok(if dir.join(&rel).exists() {
            vec![rel]
        } else {
            Vec::new()
        });
    }
    let base = glob::Pattern::escape(&dir.to_string_lossy());
    let full = format!("{base}/{pattern}");
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        // As in the shell: `*` does not match hidden files.
        require_literal_leading_dot: true,
    };
    let paths = glob::glob_with(&full, options)
        .map_err(|e| format!("not a valid glob pattern ({})", e.msg))?;
    let mut out = Vec::new();
    for path in paths {
        let path = path.map_err(|e| format!("cannot read {}", e.path().display()))?;
        let rel = path
            .strip_prefix(dir)
            .map(Path::to_path_buf)
            .unwrap_or(path);
        let in_state_dir = rel.components().any(|c| {
            c.as_os_str()
                .to_str()
                .is_some_and(crate::state::dir::is_state_dir_name)
        });
        if !in_state_dir {
            out.push(rel);
        }
    }
    out.sort();
    Ok(out)
}

/// Whether a declared output (an absolute path) provides an input pattern
/// of a step running in `dir`: it is that file, it is a folder the input
/// lies in, or the pattern matches it.
pub fn output_provides(output: &Path, dir: &Path, pattern: &str) -> bool {
    let wanted = normalize(&dir.join(pattern));
    if wanted == output || wanted.starts_with(output) {
        return true;
    }
    // The folder part is literal, whatever characters it holds.
    let escaped = format!(
        "{}/{}",
        glob::Pattern::escape(&dir.to_string_lossy()),
        pattern
    );
    glob::Pattern::new(&normalize(Path::new(&escaped)).to_string_lossy())
        .is_ok_and(|p| p.matches_path(output))
}

/// `path` without `.` and `..` components, resolved by name (not through
/// symlinks: the pipeline's folder is already a real path).
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_expand_sorted_and_relative() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        for f in ["b.csv", "a.csv", "c.txt"] {
            std::fs::write(dir.path().join("data").join(f), f).unwrap();
        }
        let got = expand(dir.path(), "data/*.csv").unwrap();
        assert_eq!(
            got,
            [PathBuf::from("data/a.csv"), PathBuf::from("data/b.csv")]
        );
        assert!(expand(dir.path(), "nope/*.csv").unwrap().is_empty());
        assert!(expand(dir.path(), "missing.txt").unwrap().is_empty());
    }

    #[test]
    fn an_output_folder_provides_what_is_in_it() {
        let out = Path::new("/p/plots");
        assert!(output_provides(out, Path::new("/p"), "plots/a.png"));
        assert!(output_provides(
            Path::new("/p/x.csv"),
            Path::new("/p/w"),
            "../x.csv"
        ));
        assert!(output_provides(
            Path::new("/p/data/x.csv"),
            Path::new("/p"),
            "data/*.csv"
        ));
        assert!(!output_provides(out, Path::new("/p"), "other/a.png"));
        // Glob characters in the folder's own path are literal.
        let odd = Path::new("/data [v2]/p");
        assert!(output_provides(&odd.join("x.csv"), odd, "*.csv"));
    }
}
