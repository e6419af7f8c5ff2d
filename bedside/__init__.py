"""NeoPain bedside agent: reads a camera, a video file or a stream, picks keyframes online and
sends them to NeoPain through an on-disk spool that survives power cuts and network outages.

Django-free: the standard library (urllib), OpenCV, numpy and Pillow (through
``inference.keyframes``). Run ``python -m bedside --help``.
"""

__version__ = "0.1.0"
