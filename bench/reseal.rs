//! Reads journal lines on stdin and writes them with their checksums made
//! right (`stepwise::journal::reseal`): `bench.py` renumbers the runs of
//! real records to make a long journal, which breaks their checksums.
//!
//!     cargo build --release --example reseal
//!     target/release/examples/reseal < edited.jsonl > journal.jsonl

use std::io::{BufRead, Write};

fn main() -> std::io::Result<()> {
    let stdin = std::io::stdin().lock();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in stdin.split(b'\n') {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        out.write_all(&stepwise::journal::reseal(&line))?;
        out.write_all(b"\n")?;
    }
    out.flush()
}
