"""nn.SyncBatchNorm: batch norm whose training statistics cover every rank's batch.

    model = nn.SyncBatchNorm.convert_sync_batchnorm(model)   # every BatchNorm1d/2d, in place

With k ranks of batch B, each batch norm then normalises with the statistics of all kB
images, as one process with batch kB would (``minires/ops/sync_batch_norm.py``), at the cost
of three small collectives per layer and step. In evaluation, and in a world of one process,
it is plain batch norm.
"""
import minires.functional as F
from minires.distributed import world
from minires.nn.layers import _BatchNorm
from minires.ops.sync_batch_norm import sync_batch_norm


class SyncBatchNorm(_BatchNorm):
    """As ``torch.nn.SyncBatchNorm``, over the whole world (there is no ``process_group``)."""

    def forward(self, x):
        if x.ndim not in (2, 4):
            raise ValueError(f"SyncBatchNorm expects 2-D or 4-D input, got shape {tuple(x.shape)}")
        if self.training:
            self.num_batches_tracked.data += 1
        if self.training and world.world_size() > 1:
            return sync_batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.momentum,
                                   self.eps)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.training,
                            self.momentum, self.eps)

    @classmethod
    def convert_sync_batchnorm(cls, module):
        """``module`` with every BatchNorm1d and BatchNorm2d in it replaced by a SyncBatchNorm that
        keeps the same parameters and buffers (the same objects: an optimizer made before still
        works). Returns the new module when ``module`` itself is a batch norm, else ``module``."""
        if isinstance(module, _BatchNorm) and not isinstance(module, cls):
            converted = cls(module.num_features, module.eps, module.momentum, affine=module.weight is not None)
            for name in ("weight", "bias", *module._buffers):
                setattr(converted, name, getattr(module, name))
            converted.training = module.training
            return converted
        for name, child in list(module._modules.items()):
            setattr(module, name, cls.convert_sync_batchnorm(child))  # in the same place: the order is kept
        return module
