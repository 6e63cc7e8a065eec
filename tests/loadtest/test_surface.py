"""The public surface of the loadtest package."""

from __future__ import annotations

import loadtest


def test_exports_are_sorted_and_resolve() -> None:
    """__all__ is sorted (constants, classes, functions), names only what exists, and the errors share one root."""

    def kind(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert loadtest.__all__ == sorted(loadtest.__all__, key=kind)
    for name in loadtest.__all__:
        assert getattr(loadtest, name) is not None
    for error in (loadtest.ConfigError, loadtest.DataError, loadtest.TargetError):
        assert issubclass(error, loadtest.LoadTestError)


def test_config_errors_name_the_option() -> None:
    """Invalid configurations are refused with a message naming the option to fix."""
    cases = [
        ({"target": "127.0.0.1:1"}, "--rate"),
        ({"target": "127.0.0.1:1", "rate": 10.0, "concurrency": 2}, "exactly one"),
        ({"target": "127.0.0.1:1", "concurrency": 1, "processes": 2}, "--processes"),
        ({"target": "localhost", "rate": 10.0}, "--target"),
        ({"target": "127.0.0.1:1", "rate": 10.0, "method": "Explain"}, "--method"),
    ]
    for kwargs, fragment in cases:
        try:
            loadtest.LoadTestConfig(**kwargs)  # type: ignore[arg-type]
        except loadtest.ConfigError as exc:
            assert fragment in str(exc)
        else:
            raise AssertionError(f"{kwargs} was accepted")
