"""Code generation: the numba kernel agrees with the pure-Python evaluator of the same AST, contains
nothing from the rule text, is called once per batch, and is cached on disk by content hash."""

from __future__ import annotations

import ast as pyast
import math
import os
import random
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import CATALOGUE, ENUMS, FeatureKind
from rules_engine import KernelOptions, RuleKernelError, RuleSet
from rules_engine import _ast as ast
from rules_engine._checks import SymbolTable, check
from rules_engine._parser import parse
from tests.rules_engine.rule_files import rule_yaml

SYMBOLS = SymbolTable.from_catalogue()
CONSTANTS = [0.0, 0.5, 1.0, 2.0, 3.0, 10.0, 60.0, 1000.0, 50000.0, 0.9]


# -- a seeded generator of valid conditions covering every construct of the language ------------


class ConditionGenerator:
    """Random well-typed condition texts; divisors, sqrt and log1p arguments are kept in their domain."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.numeric = [s for s in CATALOGUE if s.kind in (FeatureKind.INT, FeatureKind.FLOAT)]
        self.nonnegative = [s for s in self.numeric if s.nonnegative]
        self.booleans = [s for s in CATALOGUE if s.kind is FeatureKind.BOOL]
        self.enums = [s for s in CATALOGUE if s.kind is FeatureKind.ENUM]

    def constant(self) -> str:
        value = self.rng.choice(CONSTANTS)
        return repr(value) if self.rng.random() < 0.8 else repr(-value)

    def positive(self, depth: int) -> str:
        choice = self.rng.randrange(4)
        if choice == 0:
            return repr(self.rng.choice([0.5, 2.0, 3.0, 1000.0]))
        if choice == 1:
            return f"max({self.number(depth)}, {self.rng.choice([1, 0.5, 10])})"
        if choice == 2:
            return f"({self.rng.choice(self.nonnegative).name} + 1)"
        return f"(abs({self.number(depth)}) + 0.25)"

    def number(self, depth: int) -> str:
        if depth <= 0 or self.rng.random() < 0.3:
            return self.rng.choice(self.numeric).name if self.rng.random() < 0.75 else self.constant()
        d = depth - 1
        kind = self.rng.randrange(10)
        if kind < 3:
            op = self.rng.choice("+-*")
            return f"({self.number(d)} {op} {self.number(d)})"
        if kind == 3:
            return f"({self.number(d)} / {self.positive(d)})"
        if kind == 4:
            return f"-{self.number(d)}"
        if kind == 5:
            return f"abs({self.number(d)})"
        if kind == 6:
            fn = self.rng.choice(["min", "max"])
            args = ", ".join(self.number(d) for _ in range(self.rng.randint(2, 3)))
            return f"{fn}({args})"
        if kind == 7:
            return f"{self.rng.choice(['sqrt', 'log1p'])}(max({self.number(d)}, 0))"
        if kind == 8:
            return f"clip({self.number(d)}, {self.rng.choice([-1, 0, 1])}, {self.rng.choice([5, 100, 60000])})"
        return self.rng.choice(self.nonnegative).name

    def condition(self, depth: int) -> str:
        d = depth - 1
        kind = self.rng.randrange(9 if depth > 0 else 5)
        if kind == 0:
            op = self.rng.choice(["==", "!=", "<", "<=", ">", ">="])
            return f"{self.number(d)} {op} {self.number(d)}"
        if kind == 1:
            spec = self.rng.choice(self.enums)
            members = list(ENUMS[spec.enum])
            if self.rng.random() < 0.5:
                return f"{spec.name} {self.rng.choice(['==', '!='])} {self.rng.choice(members)}"
            picked = self.rng.sample(members, self.rng.randint(1, 3))
            negated = "not " if self.rng.random() < 0.3 else ""
            return f"{spec.name} {negated}in [{', '.join(picked)}]"
        if kind == 2:
            spec = self.rng.choice(self.booleans)
            return spec.name if self.rng.random() < 0.7 else f"{spec.name} == {self.rng.choice(['true', 'false'])}"
        if kind == 3:
            low = self.rng.choice([0.0, 1.0, 10.0, -5.0])
            negated = "not " if self.rng.random() < 0.3 else ""
            return f"{self.number(d)} {negated}between {low} and {low + self.rng.choice([0.0, 2.0, 50000.0])}"
        if kind == 4:
            values = ", ".join(repr(v) for v in self.rng.sample([0.0, 1.0, 2.0, 3.0, 7995.0, 60.0], 3))
            return f"{self.rng.choice(self.numeric).name} in [{values}]"
        if kind in (5, 6):
            op = "and" if kind == 5 else "or"
            parts = [self.condition(d) for _ in range(self.rng.randint(2, 3))]
            return "(" + f" {op} ".join(parts) + ")"
        if kind == 7:
            return f"not ({self.condition(d)})"
        return f"{self.number(d)} > {self.number(d)}"


def valid_conditions(count: int, seed: int) -> list[str]:
    generator = ConditionGenerator(seed)
    found: list[str] = []
    while len(found) < count:
        text = generator.condition(2)
        typed, _ = check(parse(text), SYMBOLS)
        if typed is not None:
            found.append(text)
    return found


def ruleset_text(conditions: list[str], seed: int) -> str:
    rng = random.Random(seed)
    channels = list(ENUMS["Channel"])
    parts = ['version: "gen"', "rules:"]
    for i, text in enumerate(conditions):
        rule = rule_yaml(text, rule_id=f"R_GEN_{i}")
        body = rule.split("rules:\n", 1)[1]
        if rng.random() < 0.25:
            picked = ", ".join(rng.sample(channels, rng.randint(1, 3)))
            body = body.replace("    score: 100\n", f"    score: 100\n    channels: [{picked}]\n")
        parts.append(body.rstrip("\n"))
    return "\n".join(parts) + "\n"


@pytest.fixture(scope="module")
def generated(compile_rules: Callable[[str], RuleSet]) -> RuleSet:
    """80 random conditions using every construct, compiled into one kernel."""
    return compile_rules(ruleset_text(valid_conditions(80, seed=7), seed=7))


# -- feature rows -----------------------------------------------------------------------------


def row_strategy(constants: list[float], *, specials: bool) -> st.SearchStrategy[list[float]]:
    """Rows whose values sit on and around the rules' thresholds, plus arbitrary values."""
    near = sorted({c + d for c in constants for d in (-1.0, -0.01, 0.0, 0.01, 1.0)})
    columns: list[st.SearchStrategy[float]] = []
    for spec in CATALOGUE:
        if spec.kind is FeatureKind.BOOL:
            columns.append(st.sampled_from([0.0, 1.0]))
        elif spec.kind is FeatureKind.ENUM:
            columns.append(st.sampled_from([0.0, *map(float, ENUMS[spec.enum].values())]))
        else:
            options = [
                st.sampled_from(near),
                st.floats(min_value=-1e7, max_value=1e7, allow_nan=False),
                st.integers(min_value=-2, max_value=100).map(float),
            ]
            if specials:
                options.append(st.sampled_from([math.nan, math.inf, -math.inf]))
            columns.append(st.one_of(*options))
    return st.tuples(*columns).map(list)


def constants_of(rules: RuleSet) -> list[float]:
    values = set(CONSTANTS)
    for compiled in rules._compiled:
        values.update(n.value for n in ast.walk(compiled.condition) if isinstance(n, ast.Number))
    return sorted(values)


EQUIVALENCE = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@EQUIVALENCE
@given(data=st.data())
def test_kernel_matches_reference_on_generated_conditions(generated: RuleSet, data: st.DataObject) -> None:
    """On random rows (NaN and infinities included) the kernel's hits equal the pure-Python evaluator's."""
    rows = data.draw(st.lists(row_strategy(constants_of(generated), specials=True), min_size=1, max_size=10))
    matrix = np.array(rows, dtype=np.float64)
    np.testing.assert_array_equal(generated.evaluate(matrix), generated.evaluate_reference(matrix))


@EQUIVALENCE
@given(data=st.data())
def test_kernel_matches_reference_on_the_pack(pack: RuleSet, data: st.DataObject) -> None:
    """On rows around the pack's thresholds the kernel's hits equal the pure-Python evaluator's."""
    rows = data.draw(st.lists(row_strategy(constants_of(pack), specials=False), min_size=1, max_size=10))
    matrix = np.array(rows, dtype=np.float64)
    np.testing.assert_array_equal(pack.evaluate(matrix), pack.evaluate_reference(matrix))


def test_generated_rules_hit_and_miss(generated: RuleSet) -> None:
    """The equivalence check is not vacuous: on random rows most generated rules both hit and miss."""
    rng = np.random.default_rng(3)
    near = np.array(constants_of(generated))
    matrix = rng.choice(near, size=(1000, len(CATALOGUE))) + rng.choice([-1.0, 0.0, 1.0], size=(1000, len(CATALOGUE)))
    for spec_index, spec in enumerate(CATALOGUE):
        if spec.kind is FeatureKind.BOOL:
            matrix[:, spec_index] = rng.integers(0, 2, 1000)
        elif spec.kind is FeatureKind.ENUM:
            matrix[:, spec_index] = rng.choice(list(ENUMS[spec.enum].values()), 1000)
    hits = generated.evaluate(matrix)
    np.testing.assert_array_equal(hits, generated.evaluate_reference(matrix))
    varied = ((hits.min(axis=0) == 0) & (hits.max(axis=0) == 1)).mean()
    assert varied > 0.6


# -- what the generated source may contain ----------------------------------------------------

ALLOWED_NAMES = {
    "math", "numba", "evaluate_rules", "features", "hits", "range", "abs", "i", "_fmin", "_fmax", "_fclip",
    "a", "b", "x", "low", "high",
}


def test_generated_source_holds_nothing_from_the_rule_file(compile_rules: Callable[[str], RuleSet]) -> None:
    """Ids, reasons and names never reach the kernel: only column variables, helpers and float literals."""
    text = rule_yaml(
        "amount_cny > 1 and channel == TELLER and mcc in [7995]",
        rule_id="R_X__IMPORT_OS",
        reason_zh="__import__('os').system('rm -rf /')",
        reason_en="{{amount_cny.__class__}} eval('1')",
    )
    rules = compile_rules(text)
    source = rules.kernel_path.read_text(encoding="utf-8")
    assert "R_X" not in source and "__import__" not in source and "eval(" not in source
    tree = pyast.parse(source)
    for node in pyast.walk(tree):
        if isinstance(node, pyast.Name):
            assert node.id in ALLOWED_NAMES or (node.id.startswith("c") and node.id[1:].isdigit()), node.id
        if isinstance(node, pyast.Attribute):
            assert (pyast.unparse(node.value), node.attr) in {("math", "sqrt"), ("math", "log1p"), ("numba", "njit"),
                                                             ("features", "shape")}, pyast.unparse(node)
        if isinstance(node, pyast.Constant) and isinstance(node.value, str):
            assert node.value.startswith(("Generated by rules_engine", "void(", "numpy")), node.value


def test_one_kernel_call_per_batch(pack: RuleSet) -> None:
    """evaluate() dispatches the kernel exactly once for a batch of any size."""
    calls: list[int] = []
    kernel = pack._kernel

    def counting(features: np.ndarray, hits: np.ndarray) -> None:
        calls.append(features.shape[0])
        kernel(features, hits)

    pack._kernel = counting
    try:
        pack.evaluate(np.zeros((1000, len(CATALOGUE))))
    finally:
        pack._kernel = kernel
    assert calls == [1000]


# -- the on-disk kernel cache -----------------------------------------------------------------


def test_kernel_file_is_named_by_content_and_never_rewritten(kernel_options: KernelOptions) -> None:
    """The same conditions reuse one file (untouched); different conditions get another file."""
    first = RuleSet.compile(rule_yaml("amount_cny > 123"), options=kernel_options)
    stamp = first.kernel_path.stat().st_mtime_ns
    reworded = RuleSet.compile(rule_yaml("amount_cny > 123", reason_en="other words"), options=kernel_options)
    other = RuleSet.compile(rule_yaml("amount_cny > 124"), options=kernel_options)
    assert reworded.kernel_path == first.kernel_path
    assert first.kernel_path.stat().st_mtime_ns == stamp
    assert other.kernel_path != first.kernel_path
    assert first.kernel_path.parent == Path(kernel_options.rules_dir())
    assert first.version != reworded.version


def test_least_recently_loaded_kernels_beyond_keep_are_deleted_with_their_cache(tmp_path: Path) -> None:
    """With keep=2, a third rule set deletes the least recently loaded kernel and its numba cache files; loading
    it again writes it back, and it scores as before."""
    options = KernelOptions(cache_dir=tmp_path, keep=2)
    first = RuleSet.compile(rule_yaml("amount_cny > 1001"), options=options)
    second = RuleSet.compile(rule_yaml("amount_cny > 1002"), options=options)
    RuleSet.compile(rule_yaml("amount_cny > 1001"), options=options)  # first is now the more recent of the two
    third = RuleSet.compile(rule_yaml("amount_cny > 1003"), options=options)
    rules = tmp_path / "rules"
    assert sorted(p.name for p in rules.glob("k*.py")) == sorted([first.kernel_path.name, third.kernel_path.name])
    assert not list((rules / "__pycache__").glob(f"{second.kernel_path.stem}.*"))
    assert list((rules / "__pycache__").glob(f"{first.kernel_path.stem}.*"))
    x = np.zeros((2, len(CATALOGUE)))
    x[1, [c.name for c in CATALOGUE].index("amount_cny")] = 5000.0
    again = RuleSet.compile(rule_yaml("amount_cny > 1002"), options=options)
    assert again.kernel_path == second.kernel_path and again.kernel_path.exists()
    assert np.array_equal(again.evaluate(x), second.evaluate(x))
    assert again.evaluate(x)[:, 0].tolist() == [0, 1]
    assert len(list(rules.glob("k*.py"))) == 2


def test_kernel_options_refuse_keeping_no_kernel() -> None:
    """keep=0 would delete the kernel being loaded: refused with a message naming the setting."""
    with pytest.raises(RuleKernelError, match="keep"):
        KernelOptions(keep=0)


@pytest.mark.slow
def test_numba_cache_survives_a_restart(tmp_path: Path) -> None:
    """A second process loading the same rules gets the kernel from numba's disk cache, not a compile."""
    script = textwrap.dedent(
        """
        import sys
        from rules_engine import RuleSet
        from tests.rules_engine.rule_files import rule_yaml
        rules = RuleSet.compile(rule_yaml("amount_cny > 777 and is_night"))
        print("from-cache" if rules.kernel_from_cache else "compiled", rules.kernel_path)
        """
    )
    env = {**os.environ, "OUTPOST_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    runs = [
        subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True,
                       cwd=tmp_path).stdout.split()
        for _ in range(2)
    ]
    assert runs[0][0] == "compiled"
    assert runs[1][0] == "from-cache"
    assert runs[0][1] == runs[1][1]
    assert Path(runs[0][1]).parent == tmp_path / "rules"
