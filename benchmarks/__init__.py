"""Reproducible speed and quality benchmarks for deepbg-live: ``python -m benchmarks --help``.

One module per idea: ``timing``, ``flops`` and ``system`` measure; ``context`` holds a run's
settings and our model; ``model_speed``, ``pipeline_speed``, ``accuracy``, ``temporal``,
``training_speed`` and ``reference`` are the parts; ``report`` writes the JSON, markdown and plots.
"""
