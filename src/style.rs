//! Colour on the console: when to use it (`--color`, `NO_COLOR`, whether
//! the stream is a terminal) and the few styles stepwise uses.

use std::io::IsTerminal;

/// `--color auto|always|never`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour when the stream is a terminal, `NO_COLOR` is unset or empty
    /// and `TERM` is not `dumb`.
    #[default]
    Auto,
    /// Always colour, even into a pipe or a file (`NO_COLOR` does not apply).
    Always,
    /// Never colour.
    Never,
}

impl ColorChoice {
    /// Whether to colour what goes to stderr.
    pub fn for_stderr(self) -> bool {
        self.decide(std::io::stderr().is_terminal())
    }

    /// Whether to colour what goes to stdout.
    pub fn for_stdout(self) -> bool {
        self.decide(std::io::stdout().is_terminal())
    }

    fn decide(self, terminal: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => terminal && !no_color() && !dumb_terminal(),
        }
    }
}

/// `NO_COLOR` set to anything but the empty string (<https://no-color.org>).
pub fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// `TERM=dumb`: a terminal that understands no escape sequences.
pub fn dumb_terminal() -> bool {
    std::env::var_os("TERM").is_some_and(|t| t == "dumb")
}

/// The styles stepwise paints with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paint {
    /// A success: `ok`.
    Good,
    /// A failure: `FAILED`, `error:`.
    Bad,
    /// Something to look at: `retry`, `warning:`.
    Warn,
    /// Less important: `skip`, `start`, elapsed times.
    Dim,
    /// Emphasis: names in the summary, the progress bar.
    Bold,
    /// Pointers in error messages: `-->`, `|`, `= help:`.
    Accent,
}

impl Paint {
    fn code(self) -> &'static str {
        match self {
            Paint::Good => "32",
            Paint::Bad => "1;31",
            Paint::Warn => "33",
            Paint::Dim => "2",
            Paint::Bold => "1",
            Paint::Accent => "34",
        }
    }
}

/// Paints text, or leaves it alone when colour is off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Style {
    /// Whether to colour (see [`ColorChoice`]).
    pub color: bool,
}

impl Style {
    /// A style that colours or not.
    pub fn new(color: bool) -> Style {
        Style { color }
    }

    /// `text` in the style `paint`, reset after it; unchanged when colour
    /// is off or the text is empty.
    pub fn paint(&self, paint: Paint, text: &str) -> String {
        if self.color && !text.is_empty() {
            format!("\x1b[{}m{text}\x1b[0m", paint.code())
        } else {
            text.to_string()
        }
    }

    /// Colours a rendered error or warning message: the `error:` and
    /// `warning:` heads, the `-->` and `|` gutters, the carets and the
    /// `= help:` lines.
    pub fn diagnostic(&self, text: &str) -> String {
        if !self.color {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len() + 64);
        for (i, line) in text.split('\n').enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&self.diagnostic_line(line));
        }
        out
    }

    fn diagnostic_line(&self, line: &str) -> String {
        for (head, paint) in [("error:", Paint::Bad), ("warning:", Paint::Warn)] {
            if let Some(rest) = line.strip_prefix(head) {
                return format!(
                    "{}{}",
                    self.paint(paint, head),
                    self.paint(Paint::Bold, rest)
                );
            }
        }
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        if let Some(rest) = trimmed.strip_prefix("-->") {
            return format!("{indent}{}{rest}", self.paint(Paint::Accent, "-->"));
        }
        if let Some(rest) = trimmed.strip_prefix("= help:") {
            return format!("{indent}{}{rest}", self.paint(Paint::Accent, "= help:"));
        }
        // `  |`, `7 | text`, `  | ^^^^`: paint the gutter, and carets red.
        if let Some(bar) = line.find(" |")
            && line[..bar].trim().chars().all(|c| c.is_ascii_digit())
        {
            let (gutter, rest) = line.split_at(bar + 2);
            let rest = if !rest.trim().is_empty() && rest.trim().chars().all(|c| c == '^') {
                self.paint(Paint::Bad, rest)
            } else {
                rest.to_string()
            };
            return format!("{}{rest}", self.paint(Paint::Accent, gutter));
        }
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_colour_is_plain_text() {
        let s = Style::new(false);
        assert_eq!(s.paint(Paint::Bad, "FAILED"), "FAILED");
        assert_eq!(s.diagnostic("error: x\n --> f:1:1"), "error: x\n --> f:1:1");
    }

    #[test]
    fn colours_a_diagnostic_and_keeps_its_text() {
        let text = "error: unknown key `nmae`\n --> stepwise.toml:2:1\n  |\n2 | nmae = 1\n  | ^^^^\n  = help: did you mean `name`?";
        let painted = Style::new(true).diagnostic(text);
        assert!(painted.contains("\x1b[1;31merror:\x1b[0m"), "{painted:?}");
        assert!(painted.contains("\x1b[1;31m ^^^^\x1b[0m"), "{painted:?}");
        assert!(painted.contains("\x1b[34m= help:\x1b[0m"), "{painted:?}");
        assert_eq!(strip_ansi(&painted), text);
    }

    #[test]
    fn always_and_never_ignore_the_terminal() {
        assert!(ColorChoice::Always.decide(false));
        assert!(!ColorChoice::Never.decide(true));
        assert!(!ColorChoice::Auto.decide(false));
    }

    /// Removes SGR sequences.
    fn strip_ansi(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }
}
