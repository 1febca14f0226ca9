"""DataLoader: turn a data set into shuffled, augmented mini-batches, one whole batch at a time.

    loader = DataLoader(MNISTSample(), batch_size=128, shuffle=True)
    for images, labels in loader:      # float32 N x C x H x W in [0, 1], int64 N
        ...

A batch is cut out of the data set's uint8 array with one fancy-indexing
operation (``dataset.images[idx]``), never image by image. The order of epoch
``e`` comes from ``numpy.random.default_rng([seed, e])``, so it changes every
epoch yet is the same in every run. A background thread prepares the next
``prefetch`` batches while the model works on the current one.

With ``sampler`` (a ``DistributedSampler``, say) the order is the sampler's for that epoch
instead: the loader sets the sampler's epoch before each pass.
"""
import queue
import threading

import numpy

_DONE = object()


class _WorkerError:
    """Carries an exception from the prefetch thread to the consumer."""

    def __init__(self, error):
        self.error = error


class DataLoader:
    """Iterate over ``dataset`` in mini-batches of ``(images, labels)`` NumPy arrays.

    dataset     anything with ``.images`` (N x C x H x W; uint8 is scaled by 1/255)
                and ``.labels`` (N) arrays
    batch_size  images per batch
    shuffle     a new seeded order every epoch (else the data set's order)
    drop_last   skip a final batch smaller than ``batch_size``
    seed        with the epoch number, fixes the order and the augmentation
    prefetch    batches prepared ahead in a background thread (0: no thread)
    transform   ``transform(batch, rng)`` applied to each float32 batch
    sampler     gives the indices of each epoch instead (has ``set_epoch``; a rank's
                samples get augmentation draws of their own: see ``augmentation_seed``)
    """

    def __init__(self, dataset, batch_size=128, shuffle=False, drop_last=False,
                 seed=0, prefetch=2, transform=None, sampler=None):
        if not (hasattr(dataset, "images") and hasattr(dataset, "labels")):
            raise TypeError(
                f"DataLoader needs a data set with .images (N x C x H x W) and .labels (N) arrays, "
                f"got {type(dataset).__name__}"
            )
        if len(dataset.images) != len(dataset.labels):
            raise ValueError(f"{len(dataset.images)} images but {len(dataset.labels)} labels")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if int(prefetch) < 0:
            raise ValueError(f"prefetch must be 0 (no thread) or more, got {prefetch}")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: shuffle=True and a sampler contradict each other (the sampler "
                             "chooses the order); pass shuffle to the sampler instead")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = int(seed)
        self.prefetch = int(prefetch)
        self.transform = transform
        self.sampler = sampler
        self.epoch = 0   # the epoch the next pass will use

    def __len__(self):
        """The number of batches in one epoch."""
        n = len(self.sampler) if self.sampler is not None else len(self.dataset.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    # -------------------------------------------------------- resuming
    def set_epoch(self, epoch):
        """Make the next pass use epoch ``epoch``'s order and augmentation."""
        self.epoch = int(epoch)

    def state_dict(self):
        return {"epoch": self.epoch}

    def load_state_dict(self, state):
        self.set_epoch(state["epoch"])

    # -------------------------------------------------------- iterating
    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1   # each pass moves on, even one stopped early
        batches = self._batches(epoch)
        return self._prefetched(batches) if self.prefetch > 0 else batches

    def _batches(self, epoch):
        """Generate epoch ``epoch``'s batches, all in the calling thread."""
        n = len(self.dataset.labels)
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
            order = numpy.fromiter(self.sampler, dtype=numpy.int64)
        else:
            order = numpy.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else numpy.arange(n)
        augment_rng = numpy.random.default_rng(self.augmentation_seed(epoch))   # separate stream
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            idx = order[start:start + self.batch_size]
            images = self.dataset.images[idx]
            if images.dtype == numpy.uint8:
                x = images.astype(numpy.float32)
                x /= 255   # in place: no second copy of the batch
            else:
                x = images.astype(numpy.float32)
            if self.transform is not None:
                x = self.transform(x, augment_rng)
            x = numpy.ascontiguousarray(x, dtype=numpy.float32)
            y = numpy.asarray(self.dataset.labels[idx], dtype=numpy.int64)
            yield x, y

    def augmentation_seed(self, epoch):
        """The seed of epoch ``epoch``'s augmentation draws. A sampler's rank r > 0 adds r to it, so
        that two ranks do not crop and flip their different images with the same draws."""
        rank = getattr(self.sampler, "rank", 0)
        return [self.seed, epoch, 1] + ([rank] if rank else [])

    def _prefetched(self, batches):
        """Run ``batches`` in a background thread, ``prefetch`` batches ahead."""
        q = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def put(item):
            # Wait for room, but give up when the consumer has gone away.
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    pass
            return False

        def work():
            try:
                for batch in batches:
                    if not put(batch):
                        return
                put(_DONE)
            except BaseException as error:   # handed to the consumer, re-raised there
                put(_WorkerError(error))

        thread = threading.Thread(target=work, name="minires-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if item is _DONE:
                    return
                if isinstance(item, _WorkerError):
                    raise item.error
                yield item
        finally:   # also runs when the consumer breaks out early
            stop.set()
            thread.join()
