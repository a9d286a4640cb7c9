"""`sde study compare`: Kendall's W on a hand-made case, the command on study folders, and a damaged file."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_study_report import BETTER, DOC_STATS_NAME, SAME, write_study

from sde_study.compare import average_ranks, kendall_w, permutation_p
from sde_datagen.design import short_name as short

SDE = [sys.executable, "-m", "sde_datagen.cli"]


def test_kendalls_w_of_a_hand_made_case() -> None:
    """3 judges ranking 4 designs: rank sums 4, 6, 8, 12 around 7.5, S = 35, W = 12 * 35 / (9 * 60) = 7/9."""
    ranks = np.array([[1, 2, 3, 4], [1, 3, 2, 4], [2, 1, 3, 4]], dtype=float)
    assert kendall_w(ranks) == pytest.approx(7 / 9)
    assert kendall_w(np.array([[1, 2, 3], [1, 2, 3]], dtype=float)) == pytest.approx(1.0)
    assert kendall_w(np.array([[1, 2], [2, 1]], dtype=float)) == pytest.approx(0.0)
    # ties share their mean rank, and W is corrected for them: two judges agreeing up to a tie, rank sums 2.5, 3.5,
    # 6, 8 around 5 (S = 18.5), one tie of 2 (T = 2^3 - 2 = 6): W = 12 * 18.5 / (4 * 60 - 2 * 6) = 222 / 228
    assert list(average_ranks([0.3, 0.5, 0.5, 0.1])) == [3.0, 1.5, 1.5, 4.0]
    assert kendall_w(np.array([[1, 2, 3, 4], [1.5, 1.5, 3, 4]])) == pytest.approx(222 / 228)
    # two designs, three judges agreeing: exactly 1/4 of random rankings agree as well
    assert permutation_p(np.array([[1, 2], [1, 2], [1, 2]], dtype=float)) == pytest.approx(0.25, abs=0.02)


def test_compare_prints_w_and_each_pairs_direction(tmp_path: Path) -> None:
    write_study(tmp_path / "a")
    write_study(tmp_path / "b")
    done = subprocess.run([*SDE, "study", "compare", str(tmp_path / "a"), str(tmp_path / "b")], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("Kendall's W = ") == 2 and "over 2 task(s) ranking 3 shared design(s)" in done.stdout
    first, same = short(BETTER), short(SAME)  # placement=first planted +0.15 over ew-sde, in both studies
    line = next(line for line in done.stdout.splitlines() if line.startswith(f"| `{first}` vs `{same}` |"))
    assert line.count(f"`{first}` better") == 2 and line.endswith("| agreeing (2 of 2 decided) |")
    assert done.stderr == ""


def test_a_damaged_study_file_is_one_line_and_nothing_changes(tmp_path: Path) -> None:
    write_study(tmp_path / "a")
    write_study(tmp_path / "b")
    path = tmp_path / "b" / DOC_STATS_NAME
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([lines[0], lines[1][:30], *lines[2:]]) + "\n", encoding="utf-8")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    done = subprocess.run([*SDE, "study", "compare", str(tmp_path / "a"), str(tmp_path / "b")], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and f"{DOC_STATS_NAME}:2: not a per-document statistics row" \
           in done.stderr
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    shutil.rmtree(tmp_path / "b")
    missing = subprocess.run([*SDE, "study", "compare", str(tmp_path / "a"), str(tmp_path / "b")], capture_output=True,
                             text=True, timeout=600)
    assert missing.returncode == 2 and "no study.yaml here" in missing.stderr
