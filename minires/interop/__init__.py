"""Trading weights with PyTorch: safetensors files and torchvision's state-dict names.

    safetensors_io.py      save_safetensors / load_safetensors: a flat dict name -> array in a
                           .safetensors file (no pickle), the format PyTorch weights are shared in
    torchvision_names.py   to_torchvision / from_torchvision: a CIFAR ResNet's stem / blocks / head
                           names to and from torchvision's conv1 / layer1.0 / fc

    state = minires.load_safetensors("resnet20.safetensors")          # saved by safetensors.torch.save_file
    model.load_state_dict(minires.interop.from_torchvision(state, model))

Needs the optional ``safetensors`` package (``pip install "minires[interop]"``), imported only when a
file is read or written; the name mapping needs nothing.
"""
from minires.interop.safetensors_io import load_safetensors, save_safetensors
from minires.interop.torchvision_names import from_torchvision, to_torchvision

__all__ = ["from_torchvision", "load_safetensors", "save_safetensors", "to_torchvision"]
