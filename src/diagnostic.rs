//! Error messages that point into a file: `file:line:column`, the line
//! itself, a caret under the offending text, and a hint of what to do.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem found in a user's file, located by a byte range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// What is wrong, in one sentence.
    pub message: String,
    /// Where: the file, the 1-based line and column, and the text of that line.
    pub location: Option<Location>,
    /// What to do about it.
    pub help: Option<String>,
}

/// A position in a file, resolved from a byte offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The file, as the user named it.
    pub path: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, counted in characters.
    pub column: usize,
    /// The whole line the problem is on, for the excerpt.
    pub line_text: String,
    /// How many characters to underline, at least one.
    pub width: usize,
}

impl Location {
    /// Resolves a byte range of `source` (the contents of `path`) to a line and
    /// column. Out-of-range offsets are clamped, never a panic.
    pub fn from_span(path: &Path, source: &str, span: Range<usize>) -> Location {
        let mut start = span.start.min(source.len());
        while !source.is_char_boundary(start) {
            start -= 1;
        }
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |i| start + i);
        let line_text = source[line_start..line_end].trim_end_matches('\r');
        let line = source[..start].matches('\n').count() + 1;
        let column = source[line_start..start].chars().count() + 1;
        let mut end = span.end.clamp(start, line_end);
        while !source.is_char_boundary(end) {
            end -= 1;
        }
        let width = source[start..end].chars().count().max(1);
        Location {
            path: path.to_path_buf(),
            line,
            column,
            line_text: line_text.to_string(),
            width,
        }
    }
}

impl Diagnostic {
    /// A problem with no location or help yet.
    pub fn new(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            message: message.into(),
            location: None,
            help: None,
        }
    }

    /// Points it at the byte range `span` of `source`, the contents of
    /// `path` (see [`Location::from_span`]).
    pub fn at(mut self, path: &Path, source: &str, span: Range<usize>) -> Diagnostic {
        self.location = Some(Location::from_span(path, source, span));
        self
    }

    /// Adds what to do about it.
    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    /// Renders in the style of rustc and just:
    ///
    /// ```text
    /// error: unknown key `nmae` in step #2
    ///  --> stepwise.toml:7:1
    ///   |
    /// 7 | nmae = "x"
    ///   | ^^^^
    ///   = help: did you mean `name`?
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        if let Some(loc) = &self.location {
            let gutter = loc.line.to_string().len();
            let pad = " ".repeat(gutter);
            let (text, caret_at, width) = excerpt(&loc.line_text, loc.column - 1, loc.width);
            write!(
                f,
                "\n{pad}--> {}:{}:{}\n{pad} |\n{} | {}\n{pad} | {}{}",
                loc.path.display(),
                loc.line,
                loc.column,
                loc.line,
                text,
                " ".repeat(caret_at),
                "^".repeat(width)
            )?;
            if let Some(help) = &self.help {
                write!(f, "\n{pad} = help: {help}")?;
            }
        } else if let Some(help) = &self.help {
            write!(f, "\n  = help: {help}")?;
        }
        Ok(())
    }
}

/// The part of a line to show, with tabs expanded so the caret lines up, and
/// cut to a window around the problem when the line is long; returns the
/// text, the caret's offset in it and the caret's width.
fn excerpt(line: &str, column: usize, width: usize) -> (String, usize, usize) {
    const MAX: usize = 100;
    let chars: Vec<char> = line
        .chars()
        .map(|c| if c == '\t' { ' ' } else { c })
        .collect();
    let (mut from, mut to) = (0, chars.len());
    if chars.len() > MAX {
        from = column
            .saturating_sub(MAX / 2)
            .min(chars.len().saturating_sub(MAX));
        to = (from + MAX).min(chars.len());
    }
    // A control character is shown escaped (`\u{1b}`), never sent to the
    // terminal: a pipeline file must not be able to retitle or clear it.
    // The caret is moved and widened by what the escapes add.
    let mut text = String::new();
    let (mut caret, mut caret_width) = (0, 0);
    let end = column.saturating_add(width.max(1));
    for (i, &c) in chars.iter().enumerate().take(to).skip(from) {
        let shown = escape_char(c);
        let len = shown.as_ref().map_or(1, |s| s.chars().count());
        if i < column {
            caret += len;
        } else if i < end {
            caret_width += len;
        }
        match shown {
            Some(s) => text.push_str(&s),
            None => text.push(c),
        }
    }
    if from > 0 {
        text.insert_str(0, "...");
        caret += 3;
    }
    if to < chars.len() {
        text.push_str("...");
    }
    (text, caret, caret_width.max(1))
}

/// How a character that could act on a terminal is shown instead: control
/// characters (ESC, BEL, CR...) and the bidirectional overrides that make
/// text read otherwise than it is; `None` for every other character.
fn escape_char(c: char) -> Option<String> {
    let dangerous =
        c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    dangerous.then(|| c.escape_unicode().to_string())
}

/// `text` with every character that could act on a terminal escaped
/// (`\u{1b}`), except line breaks and tabs: for any text from a user's file
/// or state that is printed, in a message or elsewhere.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text
        .chars()
        .any(|c| c != '\n' && c != '\t' && escape_char(c).is_some())
    {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match escape_char(c) {
            Some(e) if c != '\n' && c != '\t' => out.push_str(&e),
            _ => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The closest candidate to `word` if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|&(d, c)| d <= (c.chars().count().max(word.chars().count()) / 3).max(1))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Edit distance by characters where swapping two neighbours counts as one
/// edit (optimal string alignment), since `nmae` is a typo of `name`.
fn edit_distance(a: &str, b: &str) -> usize {
    strsim::osa_distance(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_line_and_column() {
        let src = "a = 1\nbb = 2\n";
        let loc = Location::from_span(Path::new("f.toml"), src, 6..8);
        assert_eq!((loc.line, loc.column, loc.width), (2, 1, 2));
        assert_eq!(loc.line_text, "bb = 2");
    }

    #[test]
    fn clamps_bad_spans() {
        let src = "é";
        let loc = Location::from_span(Path::new("f"), src, 1..99);
        assert_eq!((loc.line, loc.column), (1, 1));
    }

    #[test]
    fn long_lines_are_cut_around_the_problem() {
        let long = format!("x = \"{}\" # bad", "a".repeat(5000));
        let d = Diagnostic::new("m").at(Path::new("f"), &long, 5005..5006);
        let text = d.to_string();
        assert!(text.len() < 400, "{text}");
        let lines: Vec<&str> = text.lines().collect();
        let caret = lines.iter().find(|l| l.contains('^')).unwrap();
        let shown = lines[3];
        let at = caret.find('^').unwrap();
        assert_eq!(&shown[at..at + 1], "\"", "{text}");
    }

    #[test]
    fn control_characters_are_escaped_and_the_caret_still_points_at_them() {
        let (text, caret, width) = excerpt("name = \"a\u{1b}[31m\"", 9, 1);
        assert_eq!(text, "name = \"a\\u{1b}[31m\"");
        assert_eq!((caret, width), (9, 6), "under the whole escape");
        let (_, caret, _) = excerpt("\u{7}\u{7}x", 2, 1);
        assert_eq!(caret, 10, "after two escapes of five characters");
        assert_eq!(
            escape_controls("a\u{1b}]0;t\u{7}\nb\tc\u{202e}"),
            "a\\u{1b}]0;t\\u{7}\nb\tc\\u{202e}"
        );
        assert!(matches!(
            escape_controls("plain"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(did_you_mean("nmae", ["name", "run", "dir"]), Some("name"));
        assert_eq!(did_you_mean("aftr", ["name", "after"]), Some("after"));
        assert_eq!(did_you_mean("banana", ["name", "run"]), None);
    }

    #[test]
    fn renders_an_excerpt() {
        let d = Diagnostic::new("unknown key `nmae`")
            .at(Path::new("stepwise.toml"), "[[step]]\nnmae = 1\n", 9..13)
            .help("did you mean `name`?");
        assert_eq!(
            d.to_string(),
            "error: unknown key `nmae`\n --> stepwise.toml:2:1\n  |\n2 | nmae = 1\n  | ^^^^\n  = help: did you mean `name`?"
        );
    }
}
