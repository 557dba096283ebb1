"""Fixtures that run one sandbox subprocess per test module and reset it before each test."""

from collections.abc import Iterator

import pytest

from acquisition_assets.sandbox.process import SandboxProcess, start_sandbox


@pytest.fixture(scope="module")
def sandbox_process() -> Iterator[SandboxProcess]:
    with start_sandbox(seed=7) as process:
        yield process


@pytest.fixture
def sandbox(sandbox_process: SandboxProcess) -> SandboxProcess:
    sandbox_process.reset()
    return sandbox_process
