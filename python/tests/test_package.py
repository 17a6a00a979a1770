"""The package as installed: its stubs cover the public API, the wheel carries the worker
binary, and the binary is found as docs/python.md says."""

import ast
import inspect
import os
import pathlib
import subprocess
import sys

import wasmpool


def test_stubs_name_every_public_name():
    root = pathlib.Path(wasmpool.__file__).parent
    stub = root / "__init__.pyi"
    assert (root / "py.typed").exists()
    tree = ast.parse(stub.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ImportFrom):
            names.update(a.asname or a.name for a in node.names)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    missing = [n for n in wasmpool.__all__ if n not in names]
    assert not missing, f"not in __init__.pyi: {missing}"


def test_every_public_callable_has_a_docstring():
    for name in wasmpool.__all__:
        obj = getattr(wasmpool, name)
        if getattr(obj, "__module__", "").split(".")[0] != "wasmpool":
            continue  # re-exported: multiprocessing.TimeoutError, os.cpu_count
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__, name
        if inspect.isclass(obj) and obj.__module__.startswith("wasmpool"):
            for attr, member in vars(obj).items():
                if not attr.startswith("_") and callable(member):
                    assert member.__doc__, f"{name}.{attr}"


def test_the_wheel_carries_the_worker_binary():
    path = wasmpool.worker_binary()
    assert os.access(path, os.X_OK)
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=True)
    assert "wasmpool" in out.stdout


def test_the_binary_can_be_named_by_the_environment(tmp_path):
    code = "import wasmpool; print(wasmpool.worker_binary())"
    env = dict(os.environ, WASMPOOL_WORKER_BINARY=wasmpool.worker_binary())
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == wasmpool.worker_binary()
    missing = dict(os.environ, WASMPOOL_WORKER_BINARY=str(tmp_path / "nothing"))
    out = subprocess.run([sys.executable, "-c", code], env=missing, capture_output=True,
                         text=True)
    # A missing override falls back to the wheel's binary.
    assert out.returncode == 0 and out.stdout.strip().endswith("bin/wasmpool")
