"""The simulated group outputs (tests/group/simulated.py), shared by the group tests."""

from __future__ import annotations

import pytest

from tests.group.simulated import build_group_outputs


@pytest.fixture(scope="session")
def outputs(tmp_path_factory):
    return build_group_outputs(tmp_path_factory)
