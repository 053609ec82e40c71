"""Test-wide settings: CPU, deterministic, DDS kept on loopback."""
import os
import sys
from pathlib import Path

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))

TEST_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(TEST_DIR))  # lets tests import the helpers beside them

import pytest  # noqa: E402
import torch  # noqa: E402

torch.manual_seed(0)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: larger models or long streams (still run in CI)")


@pytest.fixture
def device() -> str:
    """Device under test: SAM2_ROS_TEST_DEVICE (default cpu)."""
    return os.environ.get("SAM2_ROS_TEST_DEVICE", "cpu")
