"""Learning curves as a PNG: loss and accuracy per epoch for train / validation / test."""


def plot_learning_curves(history, path, title=""):
    import matplotlib

    matplotlib.use("Agg")  # files only; no window
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for split, style in (("train", "-"), ("val", "--"), ("test", ":")):
        if f"{split}_loss" in history[0]:
            loss_axis.plot(epochs, [row[f"{split}_loss"] for row in history], style, label=split)
            accuracy_axis.plot(epochs, [row[f"{split}_acc"] for row in history], style, label=split)
    loss_axis.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    accuracy_axis.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for axis in (loss_axis, accuracy_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
