"""sde_files.allocator: the `sde` command restarts itself under tcmalloc, with its arguments, and only once."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sde_files.allocator import SWITCH, TRIED, environment_with_tcmalloc, tcmalloc_library

needs_tcmalloc = pytest.mark.skipif(tcmalloc_library() is None, reason="tcmalloc is not installed (make tcmalloc)")
DISPATCH = ("import sys; sys.argv = ['sde', 'data', 'designs']; from sde_datagen.main import main; "
            "from sde_files.allocator import preloaded; code = main(); print('TCMALLOC', preloaded(), code)")


def run(code: str, *args: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", SWITCH, TRIED)}
    done = subprocess.run([sys.executable, "-c", code, *args], env={**clean, **env}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


@needs_tcmalloc
def test_environment_preloads_tcmalloc_before_what_was_there():
    env = environment_with_tcmalloc({"LD_PRELOAD": "libother.so", "PATH": "/bin"})
    assert env["LD_PRELOAD"].split() == [tcmalloc_library(), "libother.so"]
    assert env["PATH"] == "/bin" and env[TRIED] == "1"
    assert environment_with_tcmalloc({"LD_PRELOAD": env["LD_PRELOAD"]}) is None  # already there
    assert environment_with_tcmalloc({SWITCH: "0"}) is None  # turned off


@needs_tcmalloc
def test_the_sde_command_runs_under_tcmalloc():
    out = run(DISPATCH)
    assert "TCMALLOC True 0" in out
    assert "es-sde" in out  # the subcommand ran, once, after the restart


def test_sde_tcmalloc_0_keeps_glibc_malloc():
    assert "TCMALLOC False 0" in run(DISPATCH, **{SWITCH: "0"})


@needs_tcmalloc
def test_restart_keeps_the_arguments_and_happens_once():
    code = ("import sys; from sde_files.allocator import restart_with_tcmalloc, preloaded; print('start', flush=True); "
            "restart_with_tcmalloc(); print(preloaded(), sys.argv[1:])")
    out = run(code, "one", "two words")
    assert out.splitlines() == ["start", "start", "True ['one', 'two words']"]
    # a preload the loader could not honour never restarts twice
    assert run(code, "x", **{TRIED: "1"}).splitlines() == ["start", "False ['x']"]
