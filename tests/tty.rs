//! The live display, through a real pseudo-terminal: stepwise runs with its
//! stdin, stdout and stderr on a pty, and what it writes is fed to a
//! terminal emulator (vt100), so the tests see the screen a person sees:
//! the status area while steps run, and after the run only the plain lines.

mod common;
use common::*;

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::pty::{Winsize, openpty};
use regex::Regex;

const ROWS: u16 = 40;
const COLS: u16 = 100;

/// What stepwise wrote to the terminal, and how long it ran.
struct Session {
    bytes: Vec<u8>,
    code: i32,
    elapsed: Duration,
}

/// Runs `stepwise ARGS` in `space` on a pseudo-terminal, to the end.
fn on_a_terminal(space: &Space, args: &[&str], env: &[(&str, &str)]) -> Session {
    let size = Winsize {
        ws_row: ROWS,
        ws_col: COLS,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = openpty(Some(&size), None).expect("a pseudo-terminal");
    let mut cmd = space.command(args);
    cmd.env("TERM", "xterm-256color")
        .env_remove("NO_COLOR")
        .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
        .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::from(pty.slave));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().expect("stepwise starts");
    // Our copies of the terminal's slave side must go, or reading the
    // master never ends.
    drop(cmd);
    let reader = std::thread::spawn(move || {
        let mut master = std::fs::File::from(pty.master);
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match master.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                // EIO: every slave descriptor is closed.
                Err(_) => break,
            }
        }
        bytes
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "stepwise hangs"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = started.elapsed();
    let bytes = reader.join().unwrap();
    Session {
        bytes,
        code: status.code().unwrap_or(-1),
        elapsed,
    }
}

impl Session {
    /// The screen after every line the program wrote, and at the end.
    fn screens(&self) -> Vec<String> {
        let mut parser = parser();
        let mut screens = Vec::new();
        for chunk in self.bytes.split_inclusive(|&b| b == b'\n') {
            parser.process(chunk);
            screens.push(parser.screen().contents());
        }
        screens
    }

    fn last_screen(&self) -> String {
        let mut parser = parser();
        parser.process(&self.bytes);
        parser.screen().contents()
    }

    fn raw(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

fn parser() -> vt100::Parser {
    let nz = |n: u16| std::num::NonZero::new(n).expect("not zero");
    vt100::Parser::new(nz(ROWS), nz(COLS), 0)
}

/// The status area's bar: `[done/total]`.
fn bar() -> Regex {
    Regex::new(r"\[\d+/\d+\](?:\x1b\[0m)? ").unwrap()
}

const THREE: &str = r#"
[[step]]
name = "first"
run = "sleep 0.6"

[[step]]
name = "second"
run = "echo hello from second; sleep 0.6"

[[step]]
name = "third"
run = "echo 'third is broken' >&2; exit 3"
"#;

#[test]
fn the_live_display_draws_while_steps_run_and_cleans_up() {
    let space = Space::with(THREE);
    let s = on_a_terminal(&space, &["run", "-j1"], &[]);
    assert_eq!(s.code, 1, "{}", s.raw());

    let screens = s.screens();
    let running = |name: &str, count: &str| {
        let line = Regex::new(&format!(r"(?m)^  {name}  +\d+(\.\d)?m?s")).unwrap();
        screens
            .iter()
            .any(|screen| line.is_match(screen) && screen.contains(count))
    };
    assert!(
        running("first", "[0/3]"),
        "a screen shows `first` running, with its elapsed time, and the bar:\n{}",
        screens.join("\n-----\n")
    );
    assert!(running("second", "[1/3]"), "{}", screens.join("\n-----\n"));

    // Afterwards: exactly the plain lines, no status area left behind.
    let last = s.last_screen();
    let lines: Vec<&str> = last.lines().filter(|l| !l.is_empty()).collect();
    let plain = Regex::new(r"\d+(\.\d)?m?s").unwrap();
    let lines: Vec<String> = lines
        .iter()
        .map(|l| plain.replace_all(l, "T").into_owned())
        .collect();
    assert_eq!(
        lines,
        [
            "Resume plan: 0 done, 3 remaining",
            "ok     first (T)",
            // -j1 on a terminal: the steps' output streams live.
            "hello from second",
            "ok     second (T)",
            "third is broken",
            "FAILED third (exit code 3, T) - log: .stepwise/logs/third.1.log",
            "3 ran (1 failed), 0 skipped as done in T",
            "failed: third",
        ],
        "the final screen:\n{last}"
    );
    assert!(!bar().is_match(&last));

    // Colour, since it is a terminal.
    assert!(s.raw().contains("\x1b[32mok"), "{:?}", s.raw());

    // Redrawn while nothing happens (the elapsed times move), but at most
    // about 20 times a second.
    let draws = bar().find_iter(&s.raw()).count();
    let most = (s.elapsed.as_secs_f64() * 20.0).ceil() as usize + 2;
    assert!(draws >= 5, "only {draws} draws in {:?}", s.elapsed);
    assert!(draws <= most, "{draws} draws in {:?}", s.elapsed);
}

#[test]
fn the_bar_estimates_the_time_left_from_earlier_runs() {
    let space = Space::with(THREE);
    on_a_terminal(&space, &["run", "-j1"], &[]);
    space.run(&["forget", "--all"]).success();
    let s = on_a_terminal(&space, &["run", "-j1"], &[]);
    let screens = s.screens();
    let eta = Regex::new(r"\[0/3\] .* ETA \d+(\.\d)?m?s\+").unwrap();
    assert!(
        screens.iter().any(|screen| eta.is_match(screen)),
        "an estimate, a lower bound since `third` never succeeded:\n{}",
        screens.join("\n-----\n")
    );
    assert!(
        screens.iter().any(|screen| screen.contains("(usually")),
        "{}",
        screens.join("\n-----\n")
    );
}

#[test]
fn parallel_steps_each_get_a_line() {
    let space = Space::with(
        "[[step]]\nname = \"left\"\nafter = []\nrun = \"sleep 0.5\"\n[[step]]\nname = \"right\"\nafter = []\nrun = \"sleep 0.5\"\n",
    );
    let s = on_a_terminal(&space, &["run", "-j2"], &[]);
    assert_eq!(s.code, 0);
    let both = s.screens().into_iter().any(|screen| {
        screen.contains("\n  left ") && screen.contains("\n  right ") && screen.contains("[0/2]")
    });
    assert!(both, "{:?}", s.raw());
    let last = s.last_screen();
    assert!(!bar().is_match(&last), "{last}");
    assert!(!last.lines().any(|l| l.starts_with("  left")), "{last}");
}

#[test]
fn no_color_on_a_terminal_keeps_the_display_without_colour() {
    let space = Space::with(THREE);
    let s = on_a_terminal(&space, &["run", "-j1"], &[("NO_COLOR", "1")]);
    let raw = s.raw();
    assert!(bar().is_match(&raw), "the live area is still drawn");
    let colour = Regex::new(r"\x1b\[[0-9;]*m").unwrap();
    assert!(!colour.is_match(&raw), "{raw:?}");
    // --color always wins over NO_COLOR.
    let s = on_a_terminal(&space, &["--color", "always", "run"], &[("NO_COLOR", "1")]);
    assert!(colour.is_match(&s.raw()));
}

#[test]
fn quiet_on_a_terminal_has_no_live_area() {
    let space = Space::with(THREE);
    let s = on_a_terminal(&space, &["-q", "run", "-j1"], &[]);
    assert_eq!(s.code, 1);
    assert!(!bar().is_match(&s.raw()), "{:?}", s.raw());
    let last = s.last_screen();
    assert!(!last.contains("ok     first"), "{last}");
    assert!(last.contains("FAILED third"), "{last}");
}

#[test]
fn a_dumb_terminal_gets_plain_lines() {
    let space = Space::with(THREE);
    let s = on_a_terminal(&space, &["run", "-j1"], &[("TERM", "dumb")]);
    assert_eq!(s.code, 1);
    let raw = s.raw();
    assert!(!raw.contains('\x1b'), "{raw:?}");
    assert!(raw.contains("start  first"), "{raw:?}");
}
