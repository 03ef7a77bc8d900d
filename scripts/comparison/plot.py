"""The plot: test accuracy and test loss per epoch, both sides, one row per model."""
from .base import LABEL


def plot(runs, models, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    models = [m for m in models if any(r.model == m and r.records for r in runs)]
    if not models:
        return None
    fig, axes = plt.subplots(len(models), 2, figsize=(11, 3.6 * len(models)), squeeze=False)
    colors = {"nnmnist": "tab:orange", "pytorch": "tab:blue"}
    for row, model in enumerate(models):
        ax_acc, ax_loss = axes[row]
        for impl in ("pytorch", "nnmnist"):  # Rust drawn on top: hollow markers over PyTorch's
            side = [r for r in runs if r.model == model and r.impl == impl and r.records]
            for i, r in enumerate(side):
                ep = [x["epoch"] for x in r.records]
                kw = dict(color=colors[impl], alpha=0.9 if len(side) == 1 else 0.6, lw=1.6,
                          ls="-" if impl == "pytorch" else "--", marker="o" if len(ep) < 6 else None,
                          ms=4 if impl == "pytorch" else 9, mfc=colors[impl] if impl == "pytorch" else "none",
                          label=f"{LABEL[impl]}" + (f" ({len(side)} seeds)" if len(side) > 1 else "") if i == 0 else None)
                ax_acc.plot(ep, [100 * x["test_accuracy"] for x in r.records], **kw)
                ax_loss.plot(ep, [x["test_loss"] for x in r.records], **kw)
        ax_acc.set_title(f"{model}: test accuracy")
        ax_acc.set_ylabel("%")
        ax_loss.set_title(f"{model}: test loss" + (" (mean batch cross-entropy)" if model == "convnet" else ""))
        for ax in (ax_acc, ax_loss):
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            ax.legend()
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
