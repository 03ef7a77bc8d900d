"""nn.py in numpy: Michael Nielsen's network.py with the whole mini-batch as one matrix.

The reference implementation of nn.py (docs/reference.md section 1) for nnmnist's MLP: float64,
sizes 784,30,10, N(0,1) init, sigmoid with z clipped to [-100, 100], quadratic cost,
mini-batches of 10 as one (784, 10) matrix, w -= (eta/m) nabla_w, b -= (eta/m) nabla_b,
eta 3.0, 30 epochs, the first 50,000 training images, all 10,000 test images every epoch.
Options add network2.py's cross-entropy cost, L2 (w *= 1 - eta*lambda/n before the step)
and N(0, 1/fan_in) init, like `nnmnist mlp`.

Used by scripts/bench_mlp (the speed baseline) and scripts/reference/make_mlp_fixtures.py
(the K-step SGD reference). Prints the lines nn.py prints plus `  test cost x` per epoch,
like `nnmnist mlp`; --metrics writes nnmnist's JSON-lines schema (implementation "numpy").

    .venv/bin/python -m scripts.reference.nn_numpy --epochs 1
"""
import argparse
import time

import numpy as np

from . import common


def sigmoid(z):
    """The logistic function, z clipped to [-100, 100] (nn.py)."""
    return 1.0 / (1.0 + np.exp(-np.clip(z, -100, 100)))


def sigmoid_prime(z):
    s = sigmoid(z)
    return s * (1 - s)


def one_hot(labels, k=10):
    """(k, m) one-hot columns."""
    y = np.zeros((k, len(labels)))
    y[labels, np.arange(len(labels))] = 1.0
    return y


def cost_fn(cost, a, y):
    """Summed cost over the columns of a, y (k, m). Cross-entropy as network2.py."""
    if cost == "quadratic":
        return 0.5 * np.sum((a - y) ** 2)
    return np.sum(np.nan_to_num(-y * np.log(a) - (1 - y) * np.log(1 - a)))


class Network:
    def __init__(self, sizes, rng, init="normal"):
        """biases[i] (out, 1), weights[i] (out, in): N(0, 1), weights / sqrt(in) with 'scaled'."""
        self.num_layers = len(sizes)
        self.sizes = sizes
        self.biases = [rng.standard_normal((y, 1)) for y in sizes[1:]]
        self.weights = [rng.standard_normal((y, x)) / (np.sqrt(x) if init == "scaled" else 1.0)
                        for x, y in zip(sizes[:-1], sizes[1:])]

    def feedforward(self, a):
        """a: (784, m) -> (10, m)."""
        for b, w in zip(self.biases, self.weights):
            a = sigmoid(np.dot(w, a) + b)
        return a

    def SGD(self, X, labels, epochs, mini_batch_size, eta, test, rng, cost="quadratic", lmbda=0.0,
            shuffle=True, on_epoch=None):
        """X (784, n) float64, labels (n,); test = (X_test, labels_test)."""
        n = X.shape[1]
        Y = one_hot(labels)
        for j in range(epochs):
            order = rng.permutation(n) if shuffle else np.arange(n)
            t0 = time.perf_counter()
            losses = []
            for k in range(0, n, mini_batch_size):
                idx = order[k:k + mini_batch_size]
                losses.append(self.update_mini_batch(X[:, idx], Y[:, idx], eta, cost, lmbda, n))
            train_seconds = time.perf_counter() - t0
            if on_epoch:
                on_epoch(j, float(np.mean(losses)), train_seconds)

    def update_mini_batch(self, X, Y, eta, cost="quadratic", lmbda=0.0, n=1):
        """One step on the batch X (784, m), Y (10, m). Returns the batch's mean cost."""
        m = X.shape[1]
        nabla_b, nabla_w, total = self.backprop(X, Y, cost)
        self.weights = [(1 - eta * (lmbda / n)) * w - (eta / m) * nw
                        for w, nw in zip(self.weights, nabla_w)]
        self.biases = [b - (eta / m) * nb for b, nb in zip(self.biases, nabla_b)]
        return total / m

    def backprop(self, X, Y, cost="quadratic"):
        """Summed gradients over the batch: nabla_b[i] (out, 1), nabla_w[i] (out, in); and the summed cost."""
        nabla_b = [np.zeros(b.shape) for b in self.biases]
        nabla_w = [np.zeros(w.shape) for w in self.weights]
        activation = X
        activations = [X]
        zs = []
        for b, w in zip(self.biases, self.weights):
            z = np.dot(w, activation) + b
            zs.append(z)
            activation = sigmoid(z)
            activations.append(activation)
        if cost == "quadratic":
            delta = self.cost_derivative(activations[-1], Y) * sigmoid_prime(zs[-1])
        else:
            delta = activations[-1] - Y
        nabla_b[-1] = delta.sum(axis=1, keepdims=True)
        nabla_w[-1] = np.dot(delta, activations[-2].T)
        for l in range(2, self.num_layers):
            sp = sigmoid_prime(zs[-l])
            delta = np.dot(self.weights[-l + 1].T, delta) * sp
            nabla_b[-l] = delta.sum(axis=1, keepdims=True)
            nabla_w[-l] = np.dot(delta, activations[-l - 1].T)
        return nabla_b, nabla_w, cost_fn(cost, activations[-1], Y)

    def evaluate(self, X, labels, cost="quadratic"):
        """(correct, mean cost per image) on X (784, m)."""
        a = self.feedforward(X)
        correct = int(np.sum(np.argmax(a, axis=0) == labels))
        return correct, cost_fn(cost, a, one_hot(labels)) / X.shape[1]

    def cost_derivative(self, output_activations, y):
        return output_activations - y


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_mlp_args(p)
    args, sizes = common.parse_mlp_args(p)
    common.check_writable(args.metrics, "metrics file")
    (tr_x, tr_y), (te_x, te_y) = common.load_mnist(args.data_dir)
    print(f"Loaded {len(tr_x)} images of shape (28, 28) and {len(tr_y)} labels.")
    print(f"Loaded {len(te_x)} test images of shape (28, 28) and {len(te_y)} labels.")
    if args.train_size > len(tr_x):
        common.fail(f"--train-size {args.train_size} is larger than the {len(tr_x)} training images")
    test_size = args.test_size or len(te_x)
    X = tr_x[:args.train_size].reshape(-1, 784).T / 255.0
    Xt = te_x[:test_size].reshape(-1, 784).T / 255.0
    labels, test_labels = tr_y[:args.train_size].astype(np.int64), te_y[:test_size].astype(np.int64)
    rng = np.random.default_rng(args.seed)
    net = Network(sizes, rng, args.init)
    metrics = common.Metrics(args.metrics)

    def on_epoch(j, train_loss, train_seconds):
        t0 = time.perf_counter()
        correct, test_cost = net.evaluate(Xt, test_labels, args.cost)
        eval_seconds = time.perf_counter() - t0
        print(f"Epoch {j}: {correct} / {test_size}  test cost {test_cost:.6f}", flush=True)
        metrics.write(model="mlp", implementation="numpy", epoch=j + 1, test_correct=correct,
                      test_total=test_size, test_accuracy=correct / test_size, test_loss=float(test_cost),
                      train_loss=train_loss, train_seconds=train_seconds, eval_seconds=eval_seconds,
                      device="cpu", seed=args.seed)

    net.SGD(X, labels, args.epochs, args.batch_size, args.eta, (Xt, test_labels), rng, args.cost, args.lmbda,
            shuffle=not args.no_shuffle, on_epoch=on_epoch)


if __name__ == "__main__":
    main()
