"""Learning curves as a PNG: loss and accuracy per epoch for train / validation / test."""


def plot_learning_curves(history, path, title=""):
    """Write ``history`` (one dict per epoch) as a PNG at ``path``.

    The figure is made with the object API (``matplotlib.figure.Figure``), not pyplot, so
    no window opens and matplotlib's backend (a notebook's inline one, say) is left alone.
    Every epoch is drawn with a marker, so a one-epoch run still shows its single point.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(10, 4))
    loss_axis, accuracy_axis = figure.subplots(1, 2)
    for split, style in (("train", "o-"), ("val", "s--"), ("test", "^:")):
        if f"{split}_loss" in history[0]:
            loss_axis.plot(epochs, [row[f"{split}_loss"] for row in history], style, ms=4, label=split)
            accuracy_axis.plot(epochs, [row[f"{split}_acc"] for row in history], style, ms=4, label=split)
    loss_axis.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    accuracy_axis.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for axis in (loss_axis, accuracy_axis):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        axis.grid(alpha=0.3)
        axis.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
