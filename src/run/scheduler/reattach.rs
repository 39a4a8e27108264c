//! Before a run plans: the Slurm jobs of a runner that died, settled from
//! their status files and Slurm's answers, or handed to the run to adopt.

use std::path::PathBuf;

use super::jobs::{Adopted, ended_at};
use crate::error::{Error, Result};
use crate::journal::{Millis, Outcome, Record, Store, now};
use crate::plan;
use crate::run::slurm::{self, AttemptFiles, SlurmError};
use crate::state::dir::{StateDir, Writer};
use crate::view::progress::Progress;

/// Before a run plans: finds the Slurm jobs that attempts of runs whose
/// runner died were submitted as, and asks Slurm about them (one `squeue`).
/// A job that ended meanwhile gets its outcome recorded (status file
/// first, Slurm's state second), so its step is done or failed as if the
/// runner had lived. A job still queued or running is returned, for
/// [`execute_adopting`](super::execute_adopting) to wait for. Only a job
/// Slurm no longer knows that left no status file stays unfinished: it reads
/// as interrupted, and runs again.
///
/// Call it holding the lock (so every unfinished attempt is a dead runner's).
pub fn reattach(
    state: &StateDir,
    writer: &mut Writer,
    progress: &mut dyn Progress,
) -> Result<Vec<Adopted>> {
    struct Candidate {
        step: String,
        run: u64,
        attempt: u32,
        started_at: Millis,
        job: Option<String>,
        files: AttemptFiles,
    }
    let abs = StateDir::new(
        crate::state::dir::real_path(state.path()).unwrap_or_else(|_| state.path().to_path_buf()),
    );
    let mut candidates = Vec::new();
    for (name, h) in writer.history.steps() {
        let Some(a) = &h.last else { continue };
        let (Some(run), None) = (a.run, &a.finished) else {
            continue;
        };
        let files = AttemptFiles::new(&abs, name, a.number);
        // Without a job id, only an attempt that wrote its batch script
        // can have reached Slurm.
        if a.job.is_none() && !files.script.exists() {
            continue;
        }
        candidates.push(Candidate {
            step: name.to_string(),
            run,
            attempt: a.number,
            started_at: a.started_at,
            job: a.job.clone(),
            files,
        });
    }
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = candidates.iter().filter_map(|c| c.job.as_deref()).collect();
    let unreachable = |e: SlurmError, jobs: String| {
        Error::usage_with_help(
            format!("cannot ask Slurm about the jobs an earlier run left in flight ({jobs}): {e}"),
            "they may still be running, so none is submitted again until Slurm answers: run again once the Slurm controller answers (squeue)",
        )
    };
    // Slurm not installed here at all: nothing can be running for us to
    // wait for, so the status files alone decide.
    let mut slurm_here = true;
    let mut states = match slurm::states(&ids) {
        Ok(states) => states,
        Err(SlurmError::Missing(_)) => {
            slurm_here = false;
            Default::default()
        }
        Err(e) => return Err(unreachable(e, ids.join(", "))),
    };
    let scripts: Vec<PathBuf> = candidates
        .iter()
        .filter(|c| c.job.is_none())
        .map(|c| c.files.script.clone())
        .collect();
    if slurm_here && !scripts.is_empty() {
        let found = match slurm::find_by_script(&scripts) {
            Ok(found) => found,
            Err(SlurmError::Missing(_)) => {
                slurm_here = false;
                Default::default()
            }
            Err(e) => return Err(unreachable(e, "submitted without a recorded job id".into())),
        };
        for c in candidates.iter_mut().filter(|c| c.job.is_none()) {
            if let Some((job, state)) = found.get(&c.files.script) {
                writer.record(Record::Submitted {
                    run: c.run,
                    step: c.step.clone(),
                    attempt: c.attempt,
                    at: now(),
                    job: job.clone(),
                })?;
                states.insert(job.clone(), state.clone());
                c.job = Some(job.clone());
            }
        }
    }
    let forgotten: Vec<&str> = candidates
        .iter()
        .filter_map(|c| c.job.as_deref())
        .filter(|j| !states.contains_key(*j))
        .collect();
    let accounted = if slurm_here && !forgotten.is_empty() {
        slurm::accounting(&forgotten)
    } else {
        Default::default()
    };
    let mut adopted = Vec::new();
    for c in candidates {
        let job_text = c.job.clone().unwrap_or_else(|| "never submitted".into());
        let state = c
            .job
            .as_ref()
            .and_then(|j| states.get(j))
            .map(String::as_str);
        if let (Some(job), Some(state)) = (&c.job, state)
            && !slurm::is_over(state)
        {
            progress.reattached(
                &c.step,
                c.attempt,
                job,
                &format!("still {}: waiting for it", state.to_lowercase()),
            );
            adopted.push(Adopted {
                step: c.step,
                run: c.run,
                attempt: c.attempt,
                job: job.clone(),
                started_at: c.started_at,
            });
            continue;
        }
        let status = slurm::read_status(&c.files.status);
        let outcome = match (
            slurm::outcome(status.clone(), state),
            c.job.as_ref().and_then(|j| accounted.get(j)),
        ) {
            (Some(o), _) => Some(o),
            (None, Some((state, code))) => match (state.as_str(), code) {
                ("COMPLETED" | "FAILED", Some(0)) => Some(Outcome::Success),
                ("COMPLETED" | "FAILED", Some(code)) => Some(Outcome::Exited(*code)),
                (state, _) => slurm::outcome(None, Some(state)),
            },
            (None, None) => None,
        };
        match outcome {
            Some(outcome) => {
                let what = format!(
                    "ended while no runner watched it: {}",
                    plan::describe_outcome(&outcome)
                );
                writer.record(Record::AttemptFinished {
                    run: c.run,
                    step: c.step.clone(),
                    attempt: c.attempt,
                    at: now(),
                    duration_ms: ended_at(&c.files).saturating_sub(c.started_at),
                    outcome: outcome.clone(),
                    value: None,
                })?;
                let _ = std::fs::remove_file(&c.files.status);
                if outcome.ok() {
                    let _ = std::fs::remove_file(&c.files.script);
                }
                progress.reattached(&c.step, c.attempt, &job_text, &what);
            }
            None => progress.reattached(
                &c.step,
                c.attempt,
                &job_text,
                "is unknown to Slurm and left no status: it counts as interrupted and runs again",
            ),
        }
    }
    // Outcomes found here are what the plan is made from: make them durable
    // before anything acts on them.
    writer.store.sync()?;
    Ok(adopted)
}
