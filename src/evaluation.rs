//! The result of evaluating a network on a set of test images, the same for both models:
//! every image's prediction and the probability given to it, and the model's own test loss.
//! Accuracy, the confusion matrix and the list of misclassified images derive from it.
use crate::data::CLASSES;

#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// The true digit of each image, in the order evaluated.
    pub labels: Vec<u8>,
    /// The predicted digit of each image: the first index of the largest output.
    pub predictions: Vec<u8>,
    /// The probability the network gives its prediction (convnet: softmax of the logits;
    /// MLP: the sigmoid outputs divided by their sum).
    pub confidence: Vec<f64>,
    /// The model's test loss: for the convnet nn_convnet.py's mean over test batches of 64
    /// of each batch's mean cross-entropy; for the MLP the mean cost per image.
    pub loss: f64,
}

/// One misclassified test image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Miss {
    pub index: usize,
    pub label: u8,
    pub prediction: u8,
    pub confidence: f64,
}

impl Evaluation {
    pub fn total(&self) -> usize {
        self.labels.len()
    }

    pub fn correct(&self) -> usize {
        self.labels.iter().zip(&self.predictions).filter(|(l, p)| l == p).count()
    }

    /// Correct / total (NaN for an empty set, which the loaders refuse).
    pub fn accuracy(&self) -> f64 {
        self.correct() as f64 / self.total() as f64
    }

    /// counts[label][prediction]: rows the true digit, columns the prediction. The diagonal
    /// sums to [`Evaluation::correct`].
    pub fn confusion(&self) -> Vec<Vec<usize>> {
        let mut counts = vec![vec![0usize; CLASSES]; CLASSES];
        for (&l, &p) in self.labels.iter().zip(&self.predictions) {
            counts[l as usize][p as usize] += 1;
        }
        counts
    }

    /// Fails when the loss is NaN or infinite (outputs that overflow): no result to print
    /// or record as if it were one.
    pub fn check_finite(&self) -> anyhow::Result<()> {
        if !self.loss.is_finite() {
            anyhow::bail!("the test loss is {}: the network's outputs overflow on the test images", self.loss);
        }
        Ok(())
    }

    /// The misclassified images, in test-set order.
    pub fn misses(&self) -> impl Iterator<Item = Miss> + '_ {
        (0..self.total()).filter(|&i| self.labels[i] != self.predictions[i]).map(|i| Miss {
            index: i,
            label: self.labels[i],
            prediction: self.predictions[i],
            confidence: self.confidence[i],
        })
    }
}

/// First index of the largest value (np.argmax, torch.argmax on ties).
pub fn argmax<T: PartialOrd + Copy>(v: &[T]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_diagonal_is_the_correct_count() {
        let e = Evaluation { labels: vec![1, 2, 2, 7, 0], predictions: vec![1, 3, 2, 1, 0], confidence: vec![0.9, 0.6, 0.8, 0.5, 0.99], loss: 0.1 };
        let c = e.confusion();
        assert_eq!((0..CLASSES).map(|d| c[d][d]).sum::<usize>(), e.correct());
        assert_eq!(e.correct(), 3);
        assert_eq!((c[2][3], c[7][1]), (1, 1));
        assert_eq!(c.iter().flatten().sum::<usize>(), 5);
        let misses: Vec<Miss> = e.misses().collect();
        assert_eq!(misses, [Miss { index: 1, label: 2, prediction: 3, confidence: 0.6 }, Miss { index: 3, label: 7, prediction: 1, confidence: 0.5 }]);
        assert_eq!(argmax(&[0.1, 0.7, 0.7, 0.2]), 1);
    }
}
