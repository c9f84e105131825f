"""The shared-data fixture: paths in ../shared/data, and one way of skipping without them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


def test_shared_data_sits_next_to_the_checkout(shared_data: Callable[..., Path]) -> None:
    project = Path(__file__).resolve().parents[1]
    assert shared_data.root == project.parent / "shared" / "data"  # type: ignore[attr-defined]


def test_a_missing_path_skips_naming_it(shared_data: Callable[..., Path], tmp_path: Path) -> None:
    (tmp_path / "present").mkdir()
    elsewhere = type(shared_data)(tmp_path)  # the same helper over another folder
    assert elsewhere("present") == tmp_path / "present"
    assert elsewhere() == tmp_path
    with pytest.raises(pytest.skip.Exception) as info:
        elsewhere("loghub-2k", "HDFS")
    assert str(tmp_path / "loghub-2k" / "HDFS") in str(info.value)
