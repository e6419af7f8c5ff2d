"""NeoPain inference engine: face image or clip in, pain verdict out.

Pure Python (no Django): decode -> face detection -> crop + letterbox -> PainNet
classifier, plus keyframe extraction, Grad-CAM and a CLI (``python -m inference``).

The package root imports nothing heavy on purpose: ``inference.decode`` is used on
the upload path of the web process, which must not pay for importing torch.
Import the submodules you need (``inference.pipeline``, ``inference.bundle`` ...).
"""

__version__ = "0.1.0"
