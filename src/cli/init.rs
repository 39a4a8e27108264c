//! `stepwise init`: a commented starter pipeline file that runs as it is.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// The starter pipeline: three steps that run offline with a POSIX shell,
/// and comments naming every key worth knowing.
pub const TEMPLATE: &str = r#"# stepwise.toml: the steps of this pipeline, in order.
#
#   stepwise run        run every step that is not done yet
#   stepwise plan       what `run` would do, and why
#   stepwise status     each step's latest attempt
#   stepwise report     an HTML page of the pipeline and its runs
#
# A step without `after` runs after the step listed just before it, so a
# plain list is a sequence. Everything below runs as it is: try it, then
# replace the steps with your own.

[pipeline]
shell = ["sh", "-eu", "-c"]          # how each `run` is executed (default: sh -c)
env = { LC_ALL = "C" }               # added to every step's environment
# jobs = 4                           # steps at once (default: the number of CPUs)
# kill_grace = "5s"                  # how long a stopped step gets before SIGKILL

[[step]]
name = "fetch"
run = "mkdir -p out && printf 'pear,3\napple,5\npear,4\nfig,1\n' > out/raw.csv"
outputs = ["out/raw.csv"]            # a success counts only while these exist

[[step]]
name = "clean"                       # runs after `fetch`
run = "sort out/raw.csv > out/clean.csv"
inputs = ["out/raw.csv"]             # their content is part of the fingerprint:
outputs = ["out/clean.csv"]          # change a byte and the step runs again
# timeout = "10m"                    # stop it if it runs longer
# retries = 2                        # extra attempts after a failure
# retry_delay = "5s"                 # wait before the first retry; doubles each time

[[step]]
name = "report"
run = "awk -F, '{ total[$1] += $2 } END { for (f in total) print f, total[f] }' out/clean.csv | sort > out/report.txt"
inputs = ["out/clean.csv"]
outputs = ["out/report.txt"]
# after = ["clean"]                  # explicit dependencies; after = [] means none
# dir = "work"                       # working dir, relative to this file's folder
# env = { KEY = "value" }            # this step's own variables
"#;

/// Writes the starter pipeline to `path`, refusing to overwrite anything.
pub fn init(path: &Path) -> Result<()> {
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::usage_with_help(
                format!("{} already exists", path.display()),
                "stepwise init never overwrites a file: remove it first, or write the starter elsewhere with -f PATH",
            ));
        }
        Err(e) => return Err(e).context(format!("cannot create {}", path.display())),
    };
    file.write_all(TEMPLATE.as_bytes())
        .context(format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_is_a_valid_pipeline() {
        let p = crate::Pipeline::parse(Path::new("stepwise.toml"), Path::new("/tmp"), TEMPLATE)
            .unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = p.names().collect();
        assert_eq!(names, ["fetch", "clean", "report"]);
    }
}
