"""The torch-free evaluation layer: metrics, the shared data layout and the accuracy harness.

It sits between the runtime (``deepbg_live``) and its two users (``training`` and ``benchmarks``),
so that scoring a model needs neither torch nor albumentations, and the training scores and the
benchmark scores come from one harness and cannot disagree.
"""
