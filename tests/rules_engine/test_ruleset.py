"""The RuleSet facade: versions, arrays, evaluation with channel filters, messages, errors, threads."""

from __future__ import annotations

import hashlib
import textwrap
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from features import CATALOGUE, ENUMS, FEATURE_INDEX
from rules_engine import KernelOptions, RuleCompileError, RuleEvaluationError, RuleSet, hit_cells, hits_by_row
from tests.rules_engine.rule_files import PACK

WIDTH = len(CATALOGUE)
TEXT = textwrap.dedent(
    """\
    version: "2026.1.0"
    rules:
      - id: R_TELLER_OLD
        description: {zh-CN: 老年柜面取现, en: elderly teller cash}
        typology: telecom_fraud_victim
        channels: [TELLER]
        when: txn_type == CASH_WITHDRAWAL and customer_age >= 60
        score: 400
        action_floor: CHALLENGE
        reason:
          zh-CN: "{customer_age}岁客户取现{amount_cny}元，占余额{amount_to_balance:.0%}"
          en: "Customer aged {customer_age} withdraws {amount_cny} CNY ({amount_to_balance:.0%}) via {channel}"
        guidance: {zh-CN: "请询问用途", en: "Ask what the money is for"}
      - id: R_NIGHT_SHADOW
        description: {zh-CN: 夜间, en: night}
        typology: velocity
        mode: shadow
        when: is_night
        score: 50.5
        reason: {zh-CN: "凌晨{local_hour}点", en: "at {local_hour}:00"}
      - id: R_BIG
        description: {zh-CN: 大额, en: big}
        typology: unusual_amount
        when: amount_cny >= 50000
        score: 100
        action_floor: BLOCK
        reason: {zh-CN: "金额{amount_cny}", en: "amount {amount_cny:,.2f}"}
    """
)


def row(**values: float) -> np.ndarray:
    result = np.zeros(WIDTH)
    for name, value in values.items():
        result[FEATURE_INDEX[name]] = value
    return result


TELLER = float(ENUMS["Channel"]["TELLER"])
ATM = float(ENUMS["Channel"]["ATM"])
WITHDRAWAL = float(ENUMS["TransactionType"]["CASH_WITHDRAWAL"])


@pytest.fixture(scope="module")
def rules(compile_rules: Callable[[str], RuleSet]) -> RuleSet:
    """A three-rule set: a teller-only rule, a shadow rule, a plain rule."""
    return compile_rules(TEXT)


def test_version_is_file_version_plus_text_hash(rules: RuleSet) -> None:
    """version = '<file version>+<first 12 hex of sha256(text)>'."""
    assert rules.version == "2026.1.0+" + hashlib.sha256(TEXT.encode()).hexdigest()[:12]


def test_arrays_describe_the_rules_in_file_order(rules: RuleSet) -> None:
    """active, weights and floors are read-only arrays aligned with rules."""
    assert [r.id for r in rules.rules] == ["R_TELLER_OLD", "R_NIGHT_SHADOW", "R_BIG"]
    assert rules.active.dtype == np.bool_ and rules.active.tolist() == [True, False, True]
    assert rules.weights.dtype == np.float64 and rules.weights.tolist() == [400.0, 50.5, 100.0]
    assert rules.floors.dtype == np.int8 and rules.floors.tolist() == [3, 0, 4]
    assert rules.rules[0].channels == frozenset({3})
    with pytest.raises(ValueError, match="read-only"):
        rules.weights[0] = 1.0


def test_feature_names_used_include_conditions_templates_and_channel(rules: RuleSet) -> None:
    """Features read by conditions, quoted by templates, and the channel of filtered rules."""
    assert rules.feature_names_used == {
        "txn_type", "customer_age", "amount_cny", "amount_to_balance", "channel", "is_night", "local_hour",
    }


def test_evaluate_returns_the_hit_matrix_with_channel_filter_and_shadow_rules(rules: RuleSet) -> None:
    """Teller rule hits only at the teller; shadow rules appear in the matrix; dtype is uint8."""
    batch = np.stack([
        row(channel=TELLER, txn_type=WITHDRAWAL, customer_age=70, amount_cny=60000),
        row(channel=ATM, txn_type=WITHDRAWAL, customer_age=70, is_night=1),
        row(channel=TELLER, txn_type=WITHDRAWAL, customer_age=59),
    ])
    hits = rules.evaluate(batch)
    assert hits.dtype == np.uint8 and hits.shape == (3, 3)
    assert hits.tolist() == [[1, 0, 1], [0, 1, 0], [0, 0, 0]]


def test_evaluate_accepts_other_layouts_and_rejects_wrong_shapes(rules: RuleSet) -> None:
    """Fortran-ordered or integer input is converted; a wrong width or a 1-D row is refused."""
    batch = np.asfortranarray(np.stack([row(amount_cny=60000), row(amount_cny=10)]))
    assert rules.evaluate(batch)[:, 2].tolist() == [1, 0]
    assert rules.evaluate(batch.astype(np.int64))[:, 2].tolist() == [1, 0]
    assert rules.evaluate(np.zeros((0, WIDTH))).shape == (0, 3)
    with pytest.raises(RuleEvaluationError, match=r"shape \(n, 50\)"):
        rules.evaluate(np.zeros((2, WIDTH - 1)))
    with pytest.raises(RuleEvaluationError, match=r"row\[None, :\]"):
        rules.evaluate(np.zeros(WIDTH))


def test_hit_cells_are_nonzero_of_the_hit_matrix() -> None:
    """hit_cells gives np.nonzero's cells in its order, for 0/1 matrices and any other nonzero byte, empty included."""
    rng = np.random.default_rng(5)
    for n, width in ((500, 71), (1, 3), (7, 1), (0, 4), (3, 0)):
        hits = (rng.random((n, width)) < 0.05).astype(np.uint8) * rng.integers(1, 256, (n, width), dtype=np.uint8)
        rows, cols = hit_cells(hits)
        want_rows, want_cols = np.nonzero(hits)
        assert rows.tolist() == want_rows.tolist() and cols.tolist() == want_cols.tolist()


def test_hits_by_row_groups_each_rows_kept_columns_in_order() -> None:
    """hits_by_row maps each row with a hit to its columns in order; keep drops the unflagged columns (and rows left
    with none)."""
    rng = np.random.default_rng(6)
    hits = (rng.random((300, 20)) < 0.1).astype(np.uint8)
    keep = (rng.random(20) < 0.7).tolist()
    for flags in (None, keep):
        want = {
            r: [j for j in range(20) if hits[r, j] and (flags is None or flags[j])]
            for r in range(300)
        }
        assert hits_by_row(*hit_cells(hits), keep=flags) == {r: cols for r, cols in want.items() if cols}


def test_reason_and_guidance_fill_templates_per_locale(rules: RuleSet) -> None:
    """'en' picks English, anything else zh-CN; enums print by name, ratios by spec, amounts grouped."""
    features = row(channel=TELLER, txn_type=WITHDRAWAL, customer_age=72, amount_cny=48000, amount_to_balance=0.9)
    assert rules.reason(0, features, "en") == "Customer aged 72 withdraws 48,000 CNY (90%) via TELLER"
    assert rules.reason(0, features, "zh-CN") == "72岁客户取现48,000元，占余额90%"
    assert rules.reason(0, features, "fr") == rules.reason(0, features, "zh-CN")
    assert rules.reason(0, features, "en-GB").startswith("Customer aged 72")
    assert rules.guidance(0, features, "en") == "Ask what the money is for"
    assert rules.guidance(0, features, "") == "请询问用途"
    assert rules.guidance(2, features, "en") == ""
    assert rules.reason(2, row(amount_cny=1234.5), "en") == "amount 1,234.50"
    assert rules.reason(2, row(amount_cny=1234.5), "zh-CN") == "金额1,234.50"


def test_reason_with_an_unknown_index_is_an_error(rules: RuleSet) -> None:
    """A rule index outside the set raises RuleEvaluationError."""
    with pytest.raises(RuleEvaluationError, match="out of range"):
        rules.reason(3, row(), "en")


def test_index_of_finds_rules_by_id(rules: RuleSet) -> None:
    """index_of maps ids to columns; unknown ids raise KeyError."""
    assert rules.index_of("R_BIG") == 2
    with pytest.raises(KeyError, match="R_NOPE"):
        rules.index_of("R_NOPE")


def test_a_reload_reads_its_file_once(kernel_options: KernelOptions, monkeypatch: pytest.MonkeyPatch) -> None:
    """kernel_cached then compile of the same text and source (a reload's two steps) parse it once; another
    source is read again, so its diagnostics name it."""
    from rules_engine._rulefile import read_rule_file as read

    reads: list[str] = []

    def counting(text: str, *, source: str, symbols: object) -> object:
        reads.append(source)
        return read(text, source=source, symbols=symbols)  # type: ignore[arg-type]

    monkeypatch.setattr("rules_engine._ruleset.read_rule_file", counting)
    text = PACK.read_text(encoding="utf-8") + "\n# read once\n"
    RuleSet.kernel_cached(text, source="a.yaml", options=kernel_options)
    rules = RuleSet.compile(text, source="a.yaml", options=kernel_options)
    assert reads == ["a.yaml"] and rules.source == "a.yaml"
    RuleSet.compile(text, source="b.yaml", options=kernel_options)
    assert reads == ["a.yaml", "b.yaml"]


def test_load_reads_a_file_and_reports_unreadable_ones(tmp_path: Path, kernel_options: KernelOptions) -> None:
    """load() names the file in the version source and in errors."""
    path = tmp_path / "rules.yaml"
    path.write_text(TEXT, encoding="utf-8")
    loaded = RuleSet.load(path, options=kernel_options)
    assert loaded.source == str(path) and len(loaded) == 3
    with pytest.raises(RuleCompileError) as caught:
        RuleSet.load(tmp_path / "missing.yaml", options=kernel_options)
    assert caught.value.errors[0].file.endswith("missing.yaml")
    assert "cannot read the rule file" in str(caught.value)


def test_concurrent_evaluation_from_many_threads_matches_serial(pack: RuleSet) -> None:
    """Eight threads evaluating different batches at once get exactly the serial results."""
    rng = np.random.default_rng(11)
    batches = []
    for _ in range(16):
        batch = rng.choice([0.0, 1.0, 3.0, 10.0, 60.0, 0.95, 20000.0, 60000.0], size=(2000, WIDTH))
        batches.append(batch)
    expected = [pack.evaluate(batch) for batch in batches]
    reasons = [pack.reason(0, batch[0], "en") for batch in batches]
    start = threading.Barrier(8)

    def work(index: int) -> list[bool]:
        start.wait()
        results = []
        for round_ in range(10):
            k = (index + round_) % len(batches)
            results.append(bool(np.array_equal(pack.evaluate(batches[k]), expected[k])))
            results.append(pack.reason(0, batches[k][0], "en") == reasons[k])
        return results

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(work, range(8)))
    assert all(all(o) for o in outcomes)
    assert any(e.any() for e in expected)


def test_concurrent_compilation_of_the_same_rules(kernel_options: KernelOptions) -> None:
    """Four threads compiling identical new rules at once all succeed with the same kernel file."""
    text = TEXT.replace("amount_cny >= 50000", "amount_cny >= 50001")

    def build(_: int) -> Path:
        return RuleSet.compile(text, options=kernel_options).kernel_path

    with ThreadPoolExecutor(max_workers=4) as pool:
        paths = set(pool.map(build, range(4)))
    assert len(paths) == 1
