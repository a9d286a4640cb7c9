"""In-tree PEP 517 backend: setuptools, plus `sde_kit_lm_eval.pth` at the wheel root.

Why: lm-eval has no plugin entry point for tasks; a .pth file in site-packages installs the lazy
lm-eval task hook (sde_tasks/lm_eval_hook.py). setuptools cannot put a file at the root of
site-packages for editable installs, so both the regular and the editable wheel get it here.
"""
from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

from setuptools import build_meta as _orig
from setuptools.build_meta import *  # noqa: F401,F403  (every other hook unchanged)

PTH = Path(__file__).resolve().parent.parent / "sde_tasks" / "sde_kit_lm_eval.pth"


def _add_pth(wheel_dir: str, name: str) -> str:
    path = Path(wheel_dir) / name
    data = PTH.read_bytes()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            content = src.read(item.filename)
            if item.filename.endswith(".dist-info/RECORD"):
                content += f"{PTH.name},sha256={digest},{len(data)}\n".encode()
            dst.writestr(item, content)
        dst.writestr(PTH.name, data)
    tmp.replace(path)
    return name


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _add_pth(wheel_directory, _orig.build_wheel(wheel_directory, config_settings, metadata_directory))


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return _add_pth(wheel_directory, _orig.build_editable(wheel_directory, config_settings, metadata_directory))
