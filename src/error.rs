//! The one error type of the library, and the exit code each error maps to.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::diagnostic::Diagnostic;

/// Exit code: every step in scope is done.
pub const EXIT_OK: i32 = 0;
/// Exit code: a step failed (or was not run because one it needs failed).
pub const EXIT_FAILED: i32 = 1;
/// Exit code: usage error, invalid pipeline file, corrupt journal, bad import,
/// or an I/O error of stepwise itself. Nothing was run.
pub const EXIT_ERROR: i32 = 2;
/// Exit code: another process holds the pipeline's lock.
pub const EXIT_LOCKED: i32 = 3;
/// Exit code: the run was stopped by SIGINT (128 + 2).
pub const EXIT_SIGINT: i32 = 130;
/// Exit code: the run was stopped by SIGTERM (128 + 15).
pub const EXIT_SIGTERM: i32 = 143;

/// A result whose error is this library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in stepwise, other than a step failing (a
/// failed step is an outcome in the journal, not an error).
///
/// [`Display`](fmt::Display) is the plain message, one sentence without an
/// `error:` head, so a program's own `Error: {e}` reads right; what to do
/// about it is [`Error::help`]. [`Error::render`] is the whole message as
/// the command line prints it, `error:` head, positions and `= help:` lines
/// included.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pipeline file (or another input file) has problems; each carries
    /// its position.
    #[error("{}", first_line(.0))]
    Invalid(Vec<Diagnostic>),

    /// The command line asks for something that cannot be done.
    #[error("{message}")]
    Usage {
        /// What is wrong.
        message: String,
        /// What to do about it, when there is something to say.
        help: Option<String>,
    },

    /// A line of the journal cannot be read, and it is not a torn last line
    /// (one without its newline, which readers ignore).
    #[error("the journal {}:{line} is corrupt: {message}", path.display())]
    CorruptJournal {
        /// The journal file.
        path: PathBuf,
        /// The 1-based number of the bad line.
        line: usize,
        /// What is wrong with it.
        message: String,
        /// What to do about it.
        help: String,
    },

    /// The journal was written by a newer stepwise.
    #[error(
        "the journal {} was written by a newer stepwise (line {line} is in format {version}; this stepwise reads format {})",
        path.display(),
        crate::journal::FORMAT_VERSION
    )]
    NewerJournal {
        /// The journal file.
        path: PathBuf,
        /// The 1-based number of the first line in a newer format.
        line: usize,
        /// That line's format version.
        version: u32,
    },

    /// Another process holds the lock of the state dir.
    #[error(
        "the pipeline is already running: {} holds its lock {}",
        holder.as_ref().map_or_else(|| "another process".to_string(), |h| h.to_string()),
        path.display()
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Who holds it, as the holder wrote it down; `None` when the lock
        /// file could not be read.
        holder: Option<crate::state::lock::Holder>,
    },

    /// A durable step of a Rust program (see [`crate::Run`]) cannot be run
    /// or resumed: its name is invalid or already produced its value in this
    /// run, an input or its value cannot be serialized, or its recorded value
    /// cannot be read back.
    #[error("step `{step}`: {message}")]
    Step {
        /// The step's name.
        step: String,
        /// What is wrong.
        message: String,
        /// What to do about it.
        help: String,
    },

    /// An operating-system call failed; `context` says what stepwise was doing.
    #[error("{context}: {source}")]
    Io {
        /// What stepwise was doing, e.g. `cannot read the journal PATH`.
        context: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

/// The first problem, as `file:line:column: message`, and how many more.
fn first_line(diagnostics: &[Diagnostic]) -> String {
    let Some(first) = diagnostics.first() else {
        return "invalid input".into();
    };
    let mut out = match &first.location {
        Some(l) => format!(
            "{}:{}:{}: {}",
            l.path.display(),
            l.line,
            l.column,
            first.message
        ),
        None => first.message.clone(),
    };
    if diagnostics.len() > 1 {
        out += &format!(" (and {} more problems)", diagnostics.len() - 1);
    }
    out
}

fn render_all(diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diagnostics {
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        out.push_str(&d.to_string());
    }
    out
}

impl Error {
    /// What to do about it, when there is something to say.
    pub fn help(&self) -> Option<String> {
        match self {
            Error::Invalid(d) => d.first().and_then(|d| d.help.clone()),
            Error::Usage { help, .. } => help.clone(),
            Error::CorruptJournal { help, .. } | Error::Step { help, .. } => Some(help.clone()),
            Error::NewerJournal { .. } => Some(
                "upgrade stepwise to use this pipeline; nothing was run or changed".into(),
            ),
            Error::Locked { .. } => Some(
                "wait for it to finish, or stop it; the lock is released the moment that process ends".into(),
            ),
            Error::Io { .. } => None,
        }
    }

    /// The whole message as the command line prints it: `error:` and the
    /// message, each problem of a file with its position and excerpt, and
    /// `= help:` lines.
    pub fn render(&self) -> String {
        match self {
            Error::Invalid(diagnostics) => render_all(diagnostics),
            _ => match self.help() {
                Some(help) => format!("error: {self}\n  = help: {help}"),
                None => format!("error: {self}"),
            },
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Locked { .. } => EXIT_LOCKED,
            _ => EXIT_ERROR,
        }
    }

    /// An [`Error::Usage`] without help.
    pub fn usage(message: impl Into<String>) -> Error {
        Error::Usage {
            message: message.into(),
            help: None,
        }
    }

    /// An [`Error::Usage`] with a line of help.
    pub fn usage_with_help(message: impl Into<String>, help: impl Into<String>) -> Error {
        Error::Usage {
            message: message.into(),
            help: Some(help.into()),
        }
    }

    /// An [`Error::Invalid`] with a single problem.
    pub fn invalid(diagnostic: Diagnostic) -> Error {
        Error::Invalid(vec![diagnostic])
    }
}

/// Attaches "what stepwise was doing" to an I/O error.
pub trait IoContext<T> {
    /// Turns an I/O error into [`Error::Io`] with `context`.
    fn context(self, context: impl fmt::Display) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, context: impl fmt::Display) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: context.to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_the_plain_message_and_render_is_what_the_command_line_prints() {
        let e = Error::usage_with_help("no step `x`", "`stepwise plan` lists them");
        assert_eq!(e.to_string(), "no step `x`");
        assert_eq!(e.help().as_deref(), Some("`stepwise plan` lists them"));
        assert_eq!(
            e.render(),
            "error: no step `x`\n  = help: `stepwise plan` lists them"
        );
        // A program's own `Error: {e}` says `error` once.
        assert_eq!(format!("Error: {e}"), "Error: no step `x`");

        let source = "[[step]]\nnmae = \"a\"\n";
        let d = |m: &str| {
            Diagnostic::new(m)
                .at(std::path::Path::new("p.toml"), source, 9..13)
                .help("did you mean `name`?")
        };
        let e = Error::Invalid(vec![d("unknown key `nmae`"), d("step #1 has no `name`")]);
        assert_eq!(
            e.to_string(),
            "p.toml:2:1: unknown key `nmae` (and 1 more problems)"
        );
        assert!(
            e.render()
                .starts_with("error: unknown key `nmae`\n --> p.toml:2:1")
        );
        assert_eq!(e.help().as_deref(), Some("did you mean `name`?"));
    }
}
