"""The repository's Python, one package: run its scripts from the repository root as modules
(`.venv/bin/python -m scripts.reference.nn_convnet`, `-m scripts.compare`; scripts/compare
does it from anywhere), so that they import each other by the package's names.

- scripts.reference: the PyTorch and numpy references and the fixture writers;
- scripts.comparison: the parts of scripts/compare (scripts.compare);
- scripts.gpu_check, scripts.make_data: the GPU benchmark and the data rebuild (they import
  nothing of the others, and also run as files).
"""
