"""Fixtures for the rule-engine tests: a private kernel cache, the shipped pack, a rule-file builder."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from rules_engine import KernelOptions, RuleSet
from tests.rules_engine.rule_files import PACK


@pytest.fixture(scope="session")
def kernel_options(tmp_path_factory: pytest.TempPathFactory) -> KernelOptions:
    """Kernel cache in a temporary directory, so tests never write to the user's cache."""
    return KernelOptions(cache_dir=tmp_path_factory.mktemp("outpost-cache"))


@pytest.fixture(scope="session")
def pack(kernel_options: KernelOptions) -> RuleSet:
    """The shipped default rule pack, compiled once per session."""
    return RuleSet.load(PACK, options=kernel_options)


@pytest.fixture(scope="session")
def compile_rules(kernel_options: KernelOptions) -> Callable[[str], RuleSet]:
    """Compile rule-file text with the test cache."""

    def build(text: str) -> RuleSet:
        return RuleSet.compile(text, source="test.yaml", options=kernel_options)

    return build
