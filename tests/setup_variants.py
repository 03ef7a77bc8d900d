#!/usr/bin/env python3
"""scripts/setup's choice of torch build (NNMNIST_TORCH), run against local package indexes.

A copy of scripts/setup and scripts/requirements.txt runs in a temporary directory, with
NNMNIST_VENV pointing at a temporary venv, so the project's .venv is never touched. Both
package sources are local PEP 503 indexes of tiny fake wheels written here: a "registry"
(PIP_INDEX_URL: the requirements, the CUDA header packages and the registry's torch==2.11.0)
and PyTorch's index (NNMNIST_TORCH_INDEX/<variant>: torch==2.11.0+<variant>, plus a decoy
numpy). Each fake package records which index it came from, so the checks read where pip
took it from. No network, no real torch (4.9 GB in .venv, docs/cuda.md), a few seconds a run.

Run by scripts/test; alone: python3 tests/setup_variants.py
"""
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
VARIANT_CUDA = {"cu126": "12.6", "cu128": "12.8", "cu130": "13.0", "cpu": None}
RESULTS = []


def check(what, ok, detail=""):
    RESULTS.append(ok)
    print(f"{'ok  ' if ok else 'FAIL'} {what}" + ("" if ok else f"\n     {detail}"))


def add_wheel(index, name, version, origin, extra_files=None):
    """Writes a wheel that installs <module>/_origin.py (origin = the index's name) into the
    PEP 503 index directory `index`, and its project page."""
    module = name.replace("-", "_")
    dist = f"{module}-{version}"
    files = {f"{module}/__init__.py": "", f"{module}/_origin.py": f"ORIGIN = {origin!r}\n"}
    files.update(extra_files or {})
    files[f"{dist}.dist-info/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    files[f"{dist}.dist-info/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: nnmnist-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist}.dist-info/RECORD"] = "\n".join(record + [f"{dist}.dist-info/RECORD,,"]) + "\n"
    project = index / re.sub(r"[-_.]+", "-", name).lower()
    project.mkdir(parents=True, exist_ok=True)
    filename = f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(project / filename, "w") as whl:
        for path, text in files.items():
            whl.writestr(path, text)
    links = "".join(f'<a href="{quote(w.name)}">{w.name}</a>\n' for w in sorted(project.glob("*.whl")))
    (project / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n")


def fake_torch(index, version, cuda, origin):
    add_wheel(index, "torch", version, origin, {
        "torch/__init__.py": "from . import version\n__version__ = version.__version__\n",
        "torch/version.py": f"__version__ = {version!r}\ncuda = {cuda!r}\n",
        "torch/lib/libtorch_cpu.so": "",
    })


def pins(text):
    """The name==version pins in requirement lines or in setup's headers="..." strings."""
    return re.findall(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)==([0-9][0-9A-Za-z.]*)$", text, re.M)


def main():
    tmp = Path(tempfile.mkdtemp(prefix="nnmnist-setup-"))
    try:
        run_checks(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    failed = RESULTS.count(False)
    print(f"tests/setup_variants.py: {len(RESULTS) - failed} checks passed, {failed} failed")
    return 1 if failed else 0


def run_checks(tmp):
    repo = tmp / "repo"
    (repo / "scripts").mkdir(parents=True)
    for name in ("setup", "requirements.txt"):
        shutil.copy2(ROOT / "scripts" / name, repo / "scripts" / name)
    setup_text = (repo / "scripts/setup").read_text()
    torch_base = re.search(r"^torch_base=([0-9.]+)", setup_text, re.M).group(1)

    registry, pytorch = tmp / "registry", tmp / "pytorch"
    wanted = pins((repo / "scripts/requirements.txt").read_text())
    wanted += pins("\n".join(re.findall(r'headers="([^"]*)"', setup_text)))
    for name, version in sorted(set(wanted)):
        add_wheel(registry, name, version, "registry")
    fake_torch(registry, torch_base, "13.0", "registry")
    for variant, cuda in VARIANT_CUDA.items():
        fake_torch(pytorch / variant, f"{torch_base}+{variant}", cuda, variant)
        add_wheel(pytorch / variant, "numpy", dict(wanted)["numpy"], variant)  # decoy

    venv = tmp / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "NNMNIST_"))}
    env.update(PIP_INDEX_URL=registry.as_uri(), PIP_CONFIG_FILE=os.devnull, PIP_NO_INPUT="1",
               PIP_NO_CACHE_DIR="1", NNMNIST_VENV=str(venv), NNMNIST_TORCH_INDEX=str(pytorch))
    stamp = venv / ".nnmnist-requirements"

    def setup(variant, **more):
        e = dict(env, **more)
        if variant is not None:
            e["NNMNIST_TORCH"] = variant
        return subprocess.run([repo / "scripts/setup"], env=e, capture_output=True, text=True)

    def installed():
        """{package: (version, origin)} for torch, numpy and the CUDA header packages, and
        "torch_dir": torch's directory."""
        code = ("import importlib, importlib.metadata as m, json, os\n"
                "got = {}\n"
                "for name in ('torch', 'numpy', 'nvidia-cuda-crt', 'nvidia-cuda-nvcc-cu12'):\n"
                "    try: got[name] = [m.version(name), importlib.import_module(name.replace('-', '_') + '._origin').ORIGIN]\n"
                "    except Exception: pass\n"
                "import torch\n"
                "got['torch_dir'] = os.path.dirname(torch.__file__)\n"
                "print(json.dumps(got))\n")
        r = subprocess.run([venv / "bin/python", "-c", code], capture_output=True, text=True)
        return {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(r.stdout or "{}").items()}

    def check_install(label, variant, **more):
        r = setup(variant, **more)
        got = installed()
        name = variant or "registry"
        want_torch = (f"{torch_base}+{variant}" if variant else torch_base, name)
        check(f"{label}: torch {want_torch[0]} from the {name} index, numpy from the registry",
              r.returncode == 0 and got.get("torch") == want_torch and got.get("numpy", ("", ""))[1] == "registry",
              f"exit {r.returncode}, installed {got}, stderr:\n{r.stderr}")
        link = venv / "libtorch"
        check(f"{label}: .venv/libtorch is that torch, the stamp names the variant",
              link.resolve() == Path(got.get("torch_dir", "/nonexistent")).resolve()
              and stamp.exists() and f"NNMNIST_TORCH={variant or 'unset'}" in stamp.read_text(),
              f"libtorch -> {os.path.realpath(link)}, stamp: {stamp.read_text() if stamp.exists() else None}")
        return got

    def check_nothing_done(label, variant):
        mtime = lambda: stamp.stat().st_mtime_ns if stamp.exists() else None
        before = mtime()
        r = setup(variant)
        check(f"{label}: does nothing", r.returncode == 0 and r.stderr == "" and before and mtime() == before,
              f"exit {r.returncode}, stderr:\n{r.stderr}")

    r = setup("cu999")
    check("NNMNIST_TORCH=cu999: one line naming the variable and the accepted values, exit 1",
          r.returncode == 1 and r.stderr.count("\n") == 1 and "NNMNIST_TORCH=cu999" in r.stderr
          and "cu126, cu128, cu130 or cpu" in r.stderr and not venv.exists(),
          f"exit {r.returncode}, stderr:\n{r.stderr}")

    got = check_install("NNMNIST_TORCH=cu126 (index as a directory)", "cu126")
    check("cu126: the CUDA 12.6 headers package, not the CUDA 13 one",
          got.get("nvidia-cuda-nvcc-cu12", ("",))[0].startswith("12.6.") and "nvidia-cuda-crt" not in got,
          f"installed {got}")
    check_nothing_done("cu126 again", "cu126")
    check_install("cu128 (switch)", "cu128")
    check_install("cu130 (index as a file:// URL)", "cu130", NNMNIST_TORCH_INDEX=pytorch.as_uri())
    check_install("cpu", "cpu")
    got = check_install("NNMNIST_TORCH unset (back from cpu: the registry's plain 2.11.0)", None)
    check("unset: the CUDA 13 headers package", got.get("nvidia-cuda-crt", ("",))[0].startswith("13.0."),
          f"installed {got}")
    check_nothing_done("unset again", None)
    check_nothing_done("NNMNIST_TORCH empty = unset", "")

    with open(repo / "scripts/requirements.txt", "a") as f:
        f.write("# a changed requirements file\n")
    r = setup(None)
    check("a changed scripts/requirements.txt: runs pip again", r.returncode == 0 and "installing" in r.stderr,
          f"exit {r.returncode}, stderr:\n{r.stderr}")


if __name__ == "__main__":
    sys.exit(main())
