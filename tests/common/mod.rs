//! A tiny harness for end-to-end tests: a temp dir holding a pipeline, the
//! real `stepwise` binary run inside it, and helpers to read what happened.
//!
//! Steps in tests prove they ran by appending their name to the file `ran`,
//! so "ran exactly once" is checked, not assumed.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_stepwise");

pub struct Space {
    dir: tempfile::TempDir,
}

/// What one invocation of stepwise did.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    fn from(output: Output) -> Outcome {
        use std::os::unix::process::ExitStatusExt;
        Outcome {
            code: output
                .status
                .code()
                .unwrap_or_else(|| 128 + output.status.signal().unwrap_or(0)),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.code, expected,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn success(&self) -> &Self {
        self.code(0)
    }

    #[track_caller]
    pub fn stderr_has(&self, text: &str) -> &Self {
        assert!(
            self.stderr.contains(text),
            "stderr lacks {text:?}\n--- stderr\n{}",
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn stdout_has(&self, text: &str) -> &Self {
        assert!(
            self.stdout.contains(text),
            "stdout lacks {text:?}\n--- stdout\n{}",
            self.stdout
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

impl Space {
    pub fn new() -> Space {
        Space {
            dir: tempfile::tempdir().expect("a temp dir"),
        }
    }

    /// A space whose `stepwise.toml` is `toml`.
    pub fn with(toml: &str) -> Space {
        let space = Space::new();
        space.write("stepwise.toml", toml);
        space
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, contents: &str) {
        let path = self.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, contents).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.join(rel)).unwrap_or_default()
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.join(rel).exists()
    }

    /// The lines of the file `ran`: one per step execution.
    pub fn ran(&self) -> Vec<String> {
        self.read("ran").lines().map(String::from).collect()
    }

    /// How many times `step` appended to `ran`.
    pub fn ran_count(&self, step: &str) -> usize {
        self.ran().iter().filter(|l| *l == step).count()
    }

    pub fn journal(&self) -> String {
        self.read(".stepwise/journal.jsonl")
    }

    /// A `stepwise` command inside the space, not yet run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(self.path())
            .env_remove("NO_COLOR")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `stepwise ARGS...` to the end.
    pub fn run(&self, args: &[&str]) -> Outcome {
        Outcome::from(self.command(args).output().expect("stepwise starts"))
    }
}

/// A pipeline of steps that each append their name to `ran`, one after the
/// other. `fail` lists steps that fail while the file `fixed` is absent.
pub fn chain(names: &[&str], fail: &[&str]) -> String {
    let mut toml = String::new();
    for name in names {
        let run = if fail.contains(name) {
            format!(
                "echo {name} >> ran; test -f fixed || {{ echo '{name} is broken' >&2; exit 3; }}"
            )
        } else {
            format!("echo {name} >> ran")
        };
        toml.push_str(&format!("[[step]]\nname = \"{name}\"\nrun = \"{run}\"\n\n"));
    }
    toml
}
