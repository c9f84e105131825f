"""Fixtures shared by the test files.

``shared_data``: the public data sets in ``../shared/data`` next to the project checkout
(see its README). The project runs without them: a test that asks for a path that is not
there is skipped, with the missing path in the reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# tests/ -> the project root -> the folder that holds it, where shared/ sits.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


class SharedData:
    """Paths in the shared data folder: ``shared_data("loghub-2k", "HDFS")``; with no
    parts, the folder itself. A missing path skips the calling test."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, *parts: str) -> Path:
        path = self.root.joinpath(*parts)
        if not path.exists():
            pytest.skip(
                f"shared data not available: {path} is absent "
                "(public data sets, see ../shared/data/README.md)"
            )
        return path


@pytest.fixture(scope="session")
def shared_data() -> SharedData:
    return SharedData(SHARED_DATA)
