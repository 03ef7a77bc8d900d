//! The one rule of every output a command writes (docs/files.md states it): every output
//! goes through one [`Plan`], which knows everything the command reads and writes, and
//! refuses an output that would destroy something the user
//! keeps, before any work starts:
//! - an input of the command (a weights file it reads, an MNIST file), except the checkpoint
//!   a resumed run continues, which that run rewrites;
//! - another output of the same command;
//! - for a file that is replaced, the file stdout or stderr is written to (the console log);
//!   an appended log there is written through the stream's own descriptor instead;
//! - the checkpoint of an unfinished run, which only that run itself may replace;
//! - an nnmnist lock file (`.F.lock`), which a run holds while it saves to F.
//!
//!
//! Once checked, a replaced output is a [`SaveTarget`] and an appended one an [`Appended`]
//! ([`crate::files`] says how each is written).
use crate::files::{same_file, std_stream, Appended, SaveTarget};
use crate::tensors::{TensorFile, META_KEY};
use crate::terminal::{shell_word, Shown};
use crate::weights::RunState;
use anyhow::{bail, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// How an output is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Writing {
    /// Replaced as a whole, atomically (a checkpoint, a trace).
    Replace,
    /// Appended to (a log).
    Append,
}

/// Everything one command reads and writes, so that each of its outputs is checked against
/// all of it in one place (see the module comment): every output of a command is opened
/// through [`Plan::replace`] or [`Plan::append`].
#[derive(Debug)]
pub struct Plan {
    /// What reads the files, for messages: "the run", "the trace", "the evaluation".
    reader: &'static str,
    /// The files the command reads, each with its words ("the weights file --weights
    /// reads") and, for a name with nothing there yet, what a file there would do.
    inputs: Vec<(String, PathBuf, Option<&'static str>)>,
    /// The outputs opened so far: the flag, the path.
    outputs: Vec<(String, PathBuf)>,
    /// The checkpoint a resumed run continues and that run's id.
    continued: Option<(PathBuf, Option<String>)>,
}

impl Plan {
    /// The plan of a command; `reader` names it in messages ("the run").
    pub fn new(reader: &'static str) -> Plan {
        Plan { reader, inputs: Vec::new(), outputs: Vec::new(), continued: None }
    }

    /// The command reads `path`; `what` names it ("the weights file --weights reads").
    pub fn reads(&mut self, what: impl Into<String>, path: &Path) -> &mut Plan {
        self.inputs.push((what.into(), path.to_path_buf(), None));
        self
    }

    /// The command reads the MNIST files of `dir`: every name it reads them under
    /// ([`crate::data::names_in`]), a copy there or not (a file written under a free name
    /// would be read as a second copy).
    pub fn reads_mnist(&mut self, dir: &Path) -> &mut Plan {
        for f in crate::data::names_in(dir) {
            if fs::symlink_metadata(&f).is_ok() {
                let what = format!("the MNIST file {} that {} reads", f.shown(), self.reader);
                self.inputs.push((what, f, None));
            } else {
                let what = format!("a name under which {} reads an MNIST file", self.reader);
                self.inputs.push((what, f, Some("a file written there would be taken for MNIST data; write elsewhere")));
            }
        }
        self
    }

    /// The command continues the run whose checkpoint is `checkpoint` (its id `run`): that
    /// file, or another checkpoint of the same run, may be replaced by it.
    pub fn continues(&mut self, checkpoint: &Path, run: Option<&str>) -> &mut Plan {
        self.inputs.push(("the checkpoint --resume reads".into(), checkpoint.to_path_buf(), None));
        self.continued = Some((checkpoint.to_path_buf(), run.map(str::to_string)));
        self
    }

    /// Checks `path` (named by `flag`) as an output to be replaced, and opens it as a
    /// [`SaveTarget`] (checked, locked); refused when the rule forbids it.
    pub fn replace(&mut self, flag: &str, path: &Path) -> Result<SaveTarget> {
        self.check(flag, path, Writing::Replace)?;
        refuse_lock_file(flag, path)?;
        refuse_console_file(flag, path)?;
        // Locked first: a second run saving to the file is told so, whatever the file holds.
        let target = SaveTarget::open(path)?;
        self.refuse_unfinished_run(flag, target.target(), Writing::Replace)?;
        self.outputs.push((flag.to_string(), path.to_path_buf()));
        Ok(target)
    }

    /// Checks `path` (named by `flag`) as a log to append to, and opens it.
    pub fn append(&mut self, flag: &str, path: &Path) -> Result<Appended> {
        self.check(flag, path, Writing::Append)?;
        refuse_lock_file(flag, path)?;
        self.refuse_unfinished_run(flag, path, Writing::Append)?;
        let appended = Appended::open(path)?;
        self.outputs.push((flag.to_string(), path.to_path_buf()));
        Ok(appended)
    }

    /// The checks that need no file opened: not an input, not another output.
    fn check(&self, flag: &str, path: &Path, how: Writing) -> Result<()> {
        let continued = self.continued.as_ref().map(|(p, _)| p.as_path());
        for (what, input, absent) in &self.inputs {
            if how == Writing::Replace && Some(input.as_path()) == continued {
                continue;
            }
            if same_file(input, path) {
                let harm = match (absent, how) {
                    (Some(harm), _) => harm,
                    (None, Writing::Replace) => "writing there would destroy it",
                    (None, Writing::Append) => "appending records would break it",
                };
                bail!("{flag} {} is {what}: {harm}", path.shown());
            }
        }
        if let Some((other, q)) = self.outputs.iter().find(|(_, q)| same_file(q, path)) {
            bail!("{flag} {} and {other} {} are the same file: one output would destroy the other; give each its own file", path.shown(), q.shown());
        }
        Ok(())
    }

    /// Refuses `path` when it holds the checkpoint of an unfinished run that this command
    /// does not continue: only that run may replace it, and nothing appends to it.
    fn refuse_unfinished_run(&self, flag: &str, path: &Path, how: Writing) -> Result<()> {
        let Some(state) = run_state_of(path) else { return Ok(()) };
        let epochs = state.hyper.get("epochs").and_then(|e| e.as_u64()).unwrap_or(0) as usize;
        if state.next_batch == 0 && state.epochs_done >= epochs {
            return Ok(());
        }
        if let (Writing::Replace, Some((ck, run))) = (how, &self.continued) {
            if same_file(ck, path) || (run.is_some() && *run == state.run) {
                return Ok(());
            }
        }
        let verb = match how {
            Writing::Replace => "replace",
            Writing::Append => "append to",
        };
        bail!(
            "{} holds an unfinished {} run ({} of {epochs} epochs and {} batches done), which {flag} would {verb}: continue it with {}, or give {flag} another file (or delete this one) to start over",
            path.shown(),
            state.model,
            state.epochs_done,
            state.next_batch,
            resume_flags(path, state.threads)
        );
    }
}

/// The flags that continue the run whose checkpoint is `checkpoint`, as a hint to paste:
/// `--resume FILE`, and the libtorch thread count it ran with, for a resume bit for bit.
pub fn resume_flags(checkpoint: &Path, threads: Option<usize>) -> String {
    format!("--resume {}{}", shell_word(checkpoint), threads.map(|t| format!(" --threads {t}")).unwrap_or_default())
}

/// The run state of `path` when it is an nnmnist checkpoint (a regular, readable tensor
/// file whose metadata holds one); None for anything else. Only the header is read.
fn run_state_of(path: &Path) -> Option<RunState> {
    let file = TensorFile::open(path, "file").ok()?;
    RunState::parse(file.metadata.as_ref()?.get(META_KEY)?).ok()
}

/// Refuses to write `path` (named by `flag`) when it is an nnmnist lock file (`.F.lock`,
/// holding `nnmnist pid N`): written there, the run holding it would lose its lock, and
/// would remove the output with its lock when it ends.
fn refuse_lock_file(flag: &str, path: &Path) -> Result<()> {
    let Some(pid) = crate::files::lock_file_pid(path) else { return Ok(()) };
    bail!("{flag} {} is the lock file of an nnmnist run (pid {pid}) that saves beside it: writing there would break its lock; write elsewhere", path.shown())
}

/// Refuses to replace `path` (named by `flag`) when it is the regular file this process's
/// stdout or stderr writes to (`--save run.log > run.log`): the save would replace the file
/// and every console line written to it would be lost.
fn refuse_console_file(flag: &str, path: &Path) -> Result<()> {
    let Ok(target) = fs::metadata(path) else { return Ok(()) };
    if !target.is_file() {
        return Ok(());
    }
    match std_stream(&target) {
        Some(stream) => {
            let stream = stream.name();
            bail!("{flag} {} is the file {stream} is written to: replacing it would lose the console's lines; save elsewhere", path.shown())
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output onto a run's lock file is refused, the lock untouched; a file put at the
    /// lock's name while the run holds it (by hand, or by a command before this rule) is not
    /// removed when the run ends.
    #[test]
    fn a_lock_file_is_no_output_and_only_the_lock_itself_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let (target, lock) = (tmp.path().join("run.safetensors"), tmp.path().join(".run.safetensors.lock"));
        let saving = Plan::new("the run").replace("--save", &target).unwrap();
        let text = fs::read(&lock).unwrap();
        assert!(text.starts_with(b"nnmnist pid "), "{text:?}");
        let err = Plan::new("the run").replace("--save", &lock).unwrap_err().to_string();
        assert!(err.contains("is the lock file of an nnmnist run"), "{err}");
        let err = Plan::new("the evaluation").append("--metrics", &lock).unwrap_err().to_string();
        assert!(err.contains("is the lock file of an nnmnist run"), "{err}");
        assert_eq!(fs::read(&lock).unwrap(), text, "the lock is untouched");
        let other = tmp.path().join("other");
        fs::write(&other, b"mine").unwrap();
        fs::rename(&other, &lock).unwrap();
        drop(saving);
        assert_eq!(fs::read(&lock).unwrap(), b"mine", "a file that is not the lock stays");
    }
}
