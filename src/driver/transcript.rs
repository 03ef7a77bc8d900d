//! What a training run prints on stdout, in the words of the script its model ports
//! (nn_convnet.py's or nn.py's lines, so that the two can be diffed). The driver decides when
//! a line is printed; a model's [`Transcript`] decides what it says.
use crate::data::Mnist;
use crate::evaluation::Evaluation;

/// The console lines of one model's training run.
pub trait Transcript {
    /// The lines before the first epoch; `mnist` is the data as loaded.
    fn intro(&self, mnist: &Mnist) -> String;
    /// The header of epoch `epoch` (0-based), if any.
    fn epoch_header(&self, _epoch: usize) -> Option<String> {
        None
    }
    /// The line after batch `batch` (0-based) of an epoch whose loss was read, if any.
    fn batch_line(&self, _batch: usize, _loss: f64) -> Option<String> {
        None
    }
    /// The lines after evaluating epoch `epoch` (0-based).
    fn eval_lines(&self, epoch: usize, ev: &Evaluation) -> String;
    /// The line after the last epoch, if any.
    fn done_line(&self) -> Option<&'static str> {
        None
    }
}
