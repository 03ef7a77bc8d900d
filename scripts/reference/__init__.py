"""The references nnmnist is held against, and the writers of its test fixtures: nn_convnet
(nn_convnet.py's convnet, the determinism contract, --trace), bench_convnet (the speed
anchors: nn_convnet.py's DataLoader, PyTorch's whole-step CUDA graph), nn_torch (nn.py's MLP in
PyTorch, nnmnist mlp's draws), nn_numpy (nn.py in numpy), preprocess (nnmnist predict's
preprocessing in PIL, numpy and scipy), dump_tensors (one step of any nn.Module to
safetensors, for nnmnist diff), common (data, metrics, options), make_* (the fixtures under
tests/fixtures, and the files tests/it/tensor_files.rs and tests/it/digit.rs make at test
time). Run each as
`.venv/bin/python -m scripts.reference.NAME` from the repository root.
"""
