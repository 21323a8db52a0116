"""Free-text detection on text it was not tuned on (figures and method: docs/PII.md).

* The generated canvass notes of the held-out templates (``vault.pii.corpus_heldout``,
  committed before any tuning against them): the issue's goals, typed recall >= 0.85,
  redacted recall >= 0.95, typed precision >= 0.85, are reached and asserted (both
  seeds).
* The held-out part of presidio-research's synthetic set (templates split by id,
  ``vault.pii.evaluation.split_of``): typed recall >= 0.85, redacted recall >= 0.95 and
  typed precision >= 0.85 (0.864 since the sixth follow-up; 0.834 before) are reached
  and asserted, and the figures reached are asserted as floors, so that a regression
  fails.

The split and the generator are deterministic (fixed seeds, a hash of the template
id), so the figures are exact, not sampled.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest

from tests.conftest import SHARED_DATA
from vault.pii.corpus import DEV_TEMPLATES, DEV_TEMPLATES_2, generate_notes
from vault.pii.corpus_heldout import TEMPLATES
from vault.pii.corpus_transfer import TRANSFER_SLOTS, TRANSFER_TEMPLATES
from vault.pii.evaluation import EntityRecall, score_spans, split_of
from vault.pii.freetext import find_spans


def _score(records: list[dict[str, Any]]) -> EntityRecall:
    predicted = find_spans([r["full_text"] for r in records])
    gold = [[(s["start_position"], s["end_position"], s["entity_type"]) for s in r["spans"]]
            for r in records]
    return score_spans(gold, predicted)


def test_generator_is_deterministic_and_its_spans_point_at_their_values() -> None:
    notes = generate_notes(TEMPLATES, 120, seed=11)
    assert notes == generate_notes(TEMPLATES, 120, seed=11)
    assert notes != generate_notes(TEMPLATES, 120, seed=12)
    assert {r["template_id"] for r in notes} == set(range(len(TEMPLATES)))
    for r in notes:
        for s in r["spans"]:
            assert r["full_text"][s["start_position"] : s["end_position"]] == s["entity_value"]


def test_heldout_and_dev_templates_share_no_wording() -> None:
    assert not set(TEMPLATES) & set(DEV_TEMPLATES)
    assert not set(TEMPLATES) & set(DEV_TEMPLATES_2)


def test_dev_transfer_set_is_deterministic_and_its_spans_point_at_their_values() -> None:
    notes = generate_notes(TRANSFER_TEMPLATES, 80, 301, TRANSFER_SLOTS)
    assert notes == generate_notes(TRANSFER_TEMPLATES, 80, 301, TRANSFER_SLOTS)
    assert {r["template_id"] for r in notes} == set(range(len(TRANSFER_TEMPLATES)))
    for r in notes:
        for s in r["spans"]:
            assert r["full_text"][s["start_position"] : s["end_position"]] == s["entity_value"]


def test_template_split_is_stable_and_about_thirty_percent() -> None:
    ids = range(210)
    held = [i for i in ids if split_of(i) == "heldout"]
    assert [split_of(i) for i in ids] == [split_of(i) for i in ids]
    assert 0.2 <= len(held) / 210 <= 0.4


@pytest.mark.slow  # ~400 notes through the engine: 10-40 s on 2 loaded cores
@pytest.mark.parametrize("seed", [11, 12])
def test_canvass_heldout_reaches_the_issue_goals(seed: int) -> None:
    score = _score(generate_notes(TEMPLATES, 400, seed=seed))
    assert score.total == 1120
    assert score.typed_recall >= 0.85  # reached: 0.946 (seed 12: 0.953)
    assert score.redacted_recall >= 0.95  # reached: 0.962 (seed 12: 0.960)
    assert score.typed_precision >= 0.85  # reached: 0.931 (seed 12: 0.935)


@pytest.fixture(scope="module")
def presidio_heldout_score() -> EntityRecall:
    """The held-out split scored once for the tests below (skipped without the data)."""
    path = SHARED_DATA / "presidio_synth_dataset_v2.json.gz"
    if not path.is_file():
        pytest.skip(f"{path.name} not in shared data")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        records: list[dict[str, Any]] = json.load(fh)
    heldout = [r for r in records if split_of(r["template_id"]) == "heldout"]
    assert len(heldout) == 442
    return _score(heldout)


@pytest.mark.slow  # 442 texts through the engine
def test_presidio_heldout_split(presidio_heldout_score: EntityRecall) -> None:
    score = presidio_heldout_score
    assert score.total == 910
    assert score.typed_recall >= 0.85  # the issue's goal
    assert score.typed_recall >= 0.90  # floor; reached 0.905 (0.891 before the sixth follow-up)
    assert score.redacted_recall >= 0.95  # the issue's goal, reached: 0.958
    assert score.redacted_recall >= 0.955  # floor
    # floor; reached 0.864 with the sixth follow-up's labels (docs/PII.md), 0.834 with the
    # fifth's, 0.822 before them, 0.828 before the unknown-proper-noun rule, 0.771 and
    # 0.819 before that
    assert score.typed_precision >= 0.86


@pytest.mark.slow
def test_presidio_heldout_meets_the_precision_goal(presidio_heldout_score: EntityRecall) -> None:
    assert presidio_heldout_score.typed_precision >= 0.85  # the issue's goal, reached: 0.864
