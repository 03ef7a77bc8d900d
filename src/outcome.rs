//! How a command ends when it does not fail. `main` maps an [`Outcome`] (or an error) to the
//! exit status, in one place.

/// The end of a command that did not fail.
#[derive(Debug)]
pub enum Outcome {
    /// It did what was asked.
    Done,
    /// `nnmnist diff`: the files differ (exit status 1, as diff(1)); its table said where.
    Different,
    /// A training run stopped by a signal, once it had saved what it could (exit status
    /// 128 + the signal's number).
    Interrupted(Interrupted),
}

/// What a stopped training run tells the user: where it stopped, what was saved, and how to
/// continue.
#[derive(Debug)]
pub struct Interrupted(pub String);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
