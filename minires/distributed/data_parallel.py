"""Data-parallel training: every rank holds the whole model and trains it on its own shard.

    distributed.broadcast_parameters(model)   # once: every rank starts from rank 0's weights
    for images, labels in loader:             # the rank's shard (DistributedSampler)
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(); loss.backward()
        distributed.average_gradients(model)  # after backward, before the step
        optimizer.step()                      # the same update on every rank

Each rank's loss is the mean over its B images, so the mean of the k ranks' gradients is the
gradient of the mean loss over all kB images: the gradient one process with batch kB computes
(exactly so when batch norm sees the kB images too: ``nn.SyncBatchNorm``). Every rank then
takes the same step from the same weights, and the weights stay the same on every rank
without ever being sent again.
"""
from minires.distributed import collectives


def broadcast_parameters(model, root=0):
    """Give every rank rank ``root``'s parameters and buffers (the batch-norm statistics)."""
    collectives.broadcast_([tensor.data for _, tensor in model.named_tensors()], root)


def broadcast_buffers(model, root=0):
    """Give every rank rank ``root``'s buffers. Without SyncBatchNorm each rank's running statistics
    follow its own shard; before evaluating or saving, rank 0's are made everyone's (as PyTorch's
    DistributedDataParallel does before each forward)."""
    collectives.broadcast_([buffer.data for _, buffer in model.named_buffers()], root)


def average_gradients(model):
    """Replace each parameter's gradient by its mean over the ranks: one all-reduce per bucket.
    Parameters without a gradient (frozen ones) are left out, the same on every rank."""
    collectives.all_reduce_([p.grad.data for p in model.parameters() if p.grad is not None], op="mean")
