"""Refuse detector weights that would run code when loaded (issue 16, item 4).

A YOLO ``.pt`` file is a pickle: ``ultralytics.YOLO(path)`` unpickles it, and a pickle can call any
importable function (``os.system``, ``builtins.exec`` ...). Registration therefore accepts:

- ONNX (``.onnx``): a protobuf graph, parsed without executing anything;
- a PyTorch zip checkpoint whose pickle imports only an allow-list of tensor-rebuilding helpers
  and module classes (``torch.nn.modules.*``, ``ultralytics.nn.*``): what an ultralytics training
  run writes. The pickle is *read* opcode by opcode (:mod:`pickletools`), never unpickled.

Anything else (another import, a legacy non-zip torch file, extension-registry opcodes, a pickle we
cannot follow) raises :class:`UnsafeWeights` naming the reason.
"""

from __future__ import annotations

import pickletools
import re
import zipfile
from pathlib import Path

# Module-level names a legitimate checkpoint pickle refers to. Classes are built with their
# constructor and restored with ``__setstate__``/``__dict__`` updates: no arbitrary call.
ALLOWED_GLOBALS = re.compile(
    r"^(?:"
    r"(?:__builtin__|builtins)\.(?:set|frozenset|dict|list|tuple|slice|complex|bytearray)"
    r"|collections\.OrderedDict"
    r"|_codecs\.encode"
    r"|torch\._utils\._rebuild_(?:tensor_v2|parameter|parameter_with_state)"
    r"|torch\.(?:Size|device|dtype|float16|float32|bfloat16)"
    r"|torch\.[A-Za-z]*Storage"
    r"|torch\.nn\.modules\.[a-z_]+\.[A-Z][A-Za-z0-9]*"
    r"|ultralytics\.nn\.modules\.[a-z_]+\.[A-Z][A-Za-z0-9]*"
    r"|ultralytics\.nn\.tasks\.[A-Z][A-Za-z]*Model"
    r"|ultralytics\.utils\.IterableSimpleNamespace"
    r"|numpy\.core\.multiarray\.(?:_reconstruct|scalar)"
    r"|numpy\._core\.multiarray\.(?:_reconstruct|scalar)"
    r"|numpy\.(?:ndarray|dtype)"
    r")$"
)
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING", "SHORT_BINSTRING"}
_REFUSED_OPS = {"EXT1", "EXT2", "EXT4"}


class UnsafeWeights(ValueError):
    """The weights file could run code when loaded, or cannot be checked."""


def pickle_globals(data: bytes) -> list[str]:
    """Every ``module.name`` the pickle ``data`` would import, in order, without unpickling it."""
    found: list[str] = []
    strings: list[str] = []  # string values pushed, for STACK_GLOBAL (protocol 4)
    memo: dict[int, object] = {}
    last_pushed: object = None
    try:
        for opcode, arg, _ in pickletools.genops(data):
            name = opcode.name
            if name in _REFUSED_OPS:
                raise UnsafeWeights(f"the pickle uses the extension registry ({name})")
            if name in ("GLOBAL", "INST"):
                module, _, attr = str(arg).partition(" ")
                found.append(f"{module}.{attr}")
            elif name == "STACK_GLOBAL":
                if len(strings) < 2:
                    raise UnsafeWeights("the pickle builds an import from values it computes")
                found.append(f"{strings[-2]}.{strings[-1]}")
            if name in _STRING_OPS:
                strings.append(str(arg))
                last_pushed = str(arg)
            elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
                memo[int(arg)] = last_pushed
            elif name == "MEMOIZE":
                memo[len(memo)] = last_pushed
            elif name in ("BINGET", "LONG_BINGET", "GET"):
                value = memo.get(int(arg))
                last_pushed = value
                if isinstance(value, str):
                    strings.append(value)
            else:
                last_pushed = None
    except UnsafeWeights:
        raise
    except Exception as exc:  # pickletools raises ValueError and friends on a malformed stream
        raise UnsafeWeights(f"the pickle cannot be read: {type(exc).__name__}: {exc}") from exc
    return found


def _check_torch_zip(path: Path) -> None:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise UnsafeWeights(
            f"{path.name} is neither ONNX nor a PyTorch zip checkpoint (a legacy torch file is a bare pickle)"
        ) from None
    with archive:
        pickles = [n for n in archive.namelist() if n.endswith(".pkl")]
        if not pickles:
            raise UnsafeWeights(f"{path.name} holds no checkpoint pickle")
        for member in pickles:
            for name in pickle_globals(archive.read(member)):
                if not ALLOWED_GLOBALS.match(name):
                    raise UnsafeWeights(
                        f"{path.name} would import {name} when loaded, which is not a tensor or model class: "
                        "refused (export the detector to ONNX, or retrain it with train_face_detector)"
                    )


def _check_onnx(path: Path) -> None:
    import onnx

    try:
        onnx.checker.check_model(onnx.load(str(path), load_external_data=False))
    except Exception as exc:
        raise UnsafeWeights(f"{path.name} is not a valid ONNX model: {type(exc).__name__}: {exc}") from exc


def detector_weights_check(path: str | Path) -> str:
    """Raise :class:`UnsafeWeights` unless ``path`` is ONNX or an allow-listed torch checkpoint.

    Returns the format: ``"onnx"`` or ``"torch"``. Nothing in the file is executed.
    """
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        _check_onnx(path)
        return "onnx"
    _check_torch_zip(path)
    return "torch"
