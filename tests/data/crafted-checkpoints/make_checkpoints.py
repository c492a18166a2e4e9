#!/usr/bin/env python3
"""Writes the crafted torch.save checkpoints the checkpoint tests read, without torch.

torch.save's zip format: archive/data.pkl (pickle protocol 2; tensors are
torch._utils._rebuild_tensor_v2 calls on persistent ('storage', type, key, location, numel)
references), archive/version, and one stored record archive/data/<key> per storage.

- one_storage.pth: {"network_weights": {"w": 4096 floats 0, 1, 2, ...}}, a valid checkpoint.
- aliased_storages.pth: two tensors on storages "0" and "1" whose zip directory entries both
  point at the same bytes, each as large as the data: together they claim twice the file.

Run from this folder: python3 make_checkpoints.py
"""
import collections
import io
import pickle
import struct
import sys
import types
import zipfile

NUMEL = 4096
DATE = (2026, 1, 1, 0, 0, 0)  # fixed: the files are the same on every run

# Stand-ins with torch's names, so that pickle writes the globals torch.save writes.
torch = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")


class FloatStorage:
    pass


def _rebuild_tensor_v2(*args):
    raise NotImplementedError


FloatStorage.__module__ = "torch"
_rebuild_tensor_v2.__module__ = "torch._utils"
torch.FloatStorage = FloatStorage
torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
sys.modules["torch"] = torch
sys.modules["torch._utils"] = torch_utils


class Storage:
    def __init__(self, key):
        self.key = key


class Tensor:
    def __init__(self, storage):
        self.storage = storage

    def __reduce__(self):
        return (_rebuild_tensor_v2, (self.storage, 0, (NUMEL,), (1,), False, collections.OrderedDict()))


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", FloatStorage, obj.key, "cpu", NUMEL)
        return None


def write(path, tensors, aliases):
    """tensors: name -> storage key; aliases: extra directory entries (key -> key it points at)."""
    pkl = io.BytesIO()
    state = collections.OrderedDict((name, Tensor(Storage(key))) for name, key in tensors.items())
    TorchPickler(pkl, protocol=2).dump({"network_weights": state})
    data = struct.pack(f"<{NUMEL}f", *range(NUMEL))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr(zipfile.ZipInfo("archive/data.pkl", DATE), pkl.getvalue())
        z.writestr(zipfile.ZipInfo("archive/version", DATE), "3\n")
        for key in sorted(set(tensors.values()) - set(aliases)):
            z.writestr(zipfile.ZipInfo(f"archive/data/{key}", DATE), data)
        # Directory entries of the same length name, pointing at another record's local header.
        for alias, target in aliases.items():
            original = z.getinfo(f"archive/data/{target}")
            entry = zipfile.ZipInfo(f"archive/data/{alias}", DATE)
            entry.compress_type = zipfile.ZIP_STORED
            entry.header_offset = original.header_offset
            entry.CRC, entry.compress_size, entry.file_size = original.CRC, original.compress_size, original.file_size
            z.filelist.append(entry)
            z.NameToInfo[entry.filename] = entry


write("one_storage.pth", {"w": "0"}, {})
write("aliased_storages.pth", {"a": "0", "b": "1"}, {"1": "0"})
