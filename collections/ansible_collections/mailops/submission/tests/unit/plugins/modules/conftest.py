import pytest
from allowlist_harness import Table


@pytest.fixture
def table(tmp_path):
    return Table(tmp_path)
