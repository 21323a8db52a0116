"""Benchmark: PII detection cost on synthetic voter rows (nothing here is real data).

Per run it measures:

* ``classify``: ``vault.pii.classify_frame`` on 12 structured voter columns at
  10,000 and 1,000,000 rows (cache cleared before every timing, median of
  ``--runs``): the cost must be constant in the row count, since only a bounded
  sample is looked at. Also the cached second call (same schema).
* ``naive``: the baseline, Presidio ``AnalyzerEngine.analyze()`` on every cell,
  measured on a sample of cells in the same run (cells/s), and extrapolated to
  the 12,000,000 cells of the 1M-row frame.
* ``freetext``: redaction throughput (texts/s) of ``vault.pii.redact_texts`` vs
  raw ``nlp.pipe`` of the same spaCy model, one core; then ``redact_texts`` with
  1 and 2 processes on a larger set (worker start-up included).
* ``ingest``: HOOK for the vault core: 1,000,000-row end-to-end ingest through
  ``vault.ingest.ingest_path`` (see :func:`bench_ingest`); reported as ``null``
  until that function exists.

    python bench/pii.py --heldout ../shared/data/presidio_synth_dataset_v2.json.gz [--labels]

prints recall and precision on the development and held-out splits (docs/PII.md).

    python bench/pii.py --freetext-only [--texts 600] [--scale-texts 3000]

times redaction throughput alone (before/after a change to the recognizers).

    python bench/pii.py [--rows 10000,100000,1000000] [--runs 3] [--texts 600]
                        [--scale-texts 3000] [--naive-cells 240] [--flow] [--write-docs]

Prints one JSON document; ``--write-docs`` (re)writes the ``## PII detection``
section of docs/BENCHMARKS.md, leaving every other section as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from faker import Faker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.timing import median_time
from vault.pii import classifier, classify_frame, redact_texts
from vault.pii.engine import LANGUAGE, get_analyzer, model_name
from vault.pii.freetext import PARALLEL_MIN_TEXTS as PARALLEL_MIN
from vault.pii.freetext import shutdown_pools

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "BENCHMARKS.md"
SECTION = "## PII detection"


# --- synthetic data ------------------------------------------------------------------


def voter_frame(rows: int, seed: int = 1) -> pl.DataFrame:
    """12 structured voter columns, vectorised from small Faker pools (fast at 1M rows)."""
    fake = Faker("en_US")
    fake.seed_instance(seed)
    rng = np.random.default_rng(seed)
    pool = 2_000
    first = np.array([fake.first_name() for _ in range(pool)])
    last = np.array([fake.last_name() for _ in range(pool)])
    street = np.array([fake.street_address().upper() for _ in range(pool)])
    city = np.array([fake.city().upper() for _ in range(200)])
    dob = np.array([fake.date_of_birth(minimum_age=18).strftime("%m/%d/%Y") for _ in range(pool)])

    def pick(arr: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return arr[rng.integers(0, len(arr), rows)]

    return pl.DataFrame(
        {
            "voter_reg_num": (rng.permutation(rows) + 100_000).astype(str),
            "first_name": pick(first),
            "last_name": pick(last),
            "res_street_address": pick(street),
            "res_city_desc": pick(city),
            "zip_code": rng.integers(27000, 28999, rows).astype(str),
            "full_phone_number": rng.integers(2_002_000_000, 9_899_999_999, rows).astype(str),
            "birth_date": pick(dob),
            "party_cd": pick(np.array(["DEM", "REP", "UNA", "LIB", "GRE"])),
            "race_code": pick(np.array(["W", "B", "A", "I", "O", "U", "M"])),
            "gender_code": pick(np.array(["M", "F", "U"])),
            "precinct_abbrv": pick(np.array([f"P{i:03d}" for i in range(120)])),
        }
    )


def canvass_notes(n: int, seed: int = 2) -> list[str]:
    fake = Faker("en_US")
    fake.seed_instance(seed)
    rnd = random.Random(seed)
    forms = [
        lambda: f"Spoke with {fake.name()} at {fake.street_address()}; {fake.sentence(10)}",
        lambda: f"{fake.first_name()} asked for a ride, call {fake.phone_number()}.",
        lambda: f"Left literature. {fake.sentence(14)} Email {fake.email()} later.",
        lambda: f"{fake.name()} ({rnd.randint(19, 90)} years old) is a registered "
                f"{rnd.choice(['Democrat', 'Republican'])}; moved from {fake.city()}.",
        lambda: fake.paragraph(nb_sentences=3),
    ]
    return [rnd.choice(forms)() for _ in range(n)]


# --- timings -------------------------------------------------------------------------


def bench_classify(sizes: list[int], runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for rows in sizes:
        df = voter_frame(rows)

        def cold(df: pl.DataFrame = df) -> None:
            classifier.clear_cache()
            classify_frame(df)

        cold_s = median_time(cold, runs)
        warm_s = median_time(lambda df=df: classify_frame(df), runs)  # type: ignore[misc]
        out[str(rows)] = {"cold_s": round(cold_s, 4), "cached_s": round(warm_s, 6)}
    return out


def bench_naive(cells: int, rows_for_extrapolation: int) -> dict[str, Any]:
    """Presidio analyze() on every cell of a sample (all entities, as a naive scan would)."""
    analyzer = get_analyzer()
    df = voter_frame(max(cells, 1_000), seed=3)
    per_col = max(1, cells // df.width)
    sample = [str(v) for name in df.columns for v in df[name].head(per_col).to_list()]
    analyzer.analyze(sample[0], language=LANGUAGE)  # warm
    t0 = time.perf_counter()
    for value in sample:
        analyzer.analyze(value, language=LANGUAGE)
    elapsed = time.perf_counter() - t0
    rate = len(sample) / elapsed
    total_cells = rows_for_extrapolation * df.width
    return {
        "cells_measured": len(sample),
        "cells_per_s": round(rate, 1),
        "extrapolated_cells": total_cells,
        "extrapolated_s": round(total_cells / rate, 1),
    }


def bench_freetext(n_texts: int, scale_texts: int, rounds: int = 3) -> dict[str, Any]:
    """Rounds alternate the contenders, and medians are reported, so that load from
    other jobs on the machine hits both sides alike."""
    import spacy

    analyzer = get_analyzer()
    same = analyzer.nlp_engine.nlp[LANGUAGE]  # type: ignore[attr-defined]
    full = spacy.load(model_name())  # the model as shipped, every component enabled
    texts = canvass_notes(n_texts)
    list(full.pipe(texts[:50]))
    list(same.pipe(texts[:50]))
    redact_texts(texts[:50])
    times: dict[str, list[float]] = {"full": [], "same": [], "ours": []}
    for _ in range(rounds):
        for key, run in (
            ("full", lambda: list(full.pipe(texts, batch_size=128))),
            ("same", lambda: list(same.pipe(texts, batch_size=128))),
            ("ours", lambda: redact_texts(texts, n_process=1)),
        ):
            t0 = time.perf_counter()
            run()
            times[key].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    out: dict[str, Any] = {
        "texts": n_texts,
        "rounds": rounds,
        "raw_nlp_pipe_texts_per_s": round(n_texts / med["full"], 1),
        "raw_nlp_pipe_same_components_texts_per_s": round(n_texts / med["same"], 1),
        "redact_texts_per_s": round(n_texts / med["ours"], 1),
        "ratio_vs_raw_pipe": round(med["full"] / med["ours"], 3),
        "ratio_vs_same_components": round(med["same"] / med["ours"], 3),
        "scaling": {},
    }
    big = canvass_notes(scale_texts, seed=5)
    t0 = time.perf_counter()
    redact_texts(big[:PARALLEL_MIN], n_process=2)  # starts the 2 workers
    out["worker_startup_s"] = round(time.perf_counter() - t0, 2)
    warm: dict[int, list[float]] = {1: [], 2: []}
    cpu: dict[int, list[float]] = {1: [], 2: []}  # CPU-s of the busiest process
    for _ in range(max(1, rounds - 1)):
        for procs in (1, 2):
            pids = _pool_pids(procs)
            before = _cpu_seconds(pids)
            t0 = time.perf_counter()
            redact_texts(big, n_process=procs)
            warm[procs].append(time.perf_counter() - t0)
            after = _cpu_seconds(pids)
            cpu[procs].append(max(after[p] - before[p] for p in pids))
    for procs, runs in warm.items():
        mid = statistics.median(runs)
        out["scaling"][str(procs)] = {
            "texts": scale_texts,
            "warm_s": round(mid, 2),
            "warm_texts_per_s": round(scale_texts / mid, 1),
            "busiest_process_cpu_s": round(statistics.median(cpu[procs]), 2),
        }
    out["speedup_2_vs_1"] = round(
        statistics.median(warm[1]) / statistics.median(warm[2]), 2
    )
    # what the split achieves when the cores are free: CPU time of the busiest process
    out["cpu_speedup_2_vs_1"] = round(
        statistics.median(cpu[1]) / statistics.median(cpu[2]), 2
    )
    shutdown_pools()
    return out


def _pool_pids(procs: int) -> list[int]:
    if procs == 1:
        return [os.getpid()]
    from vault.pii import freetext

    pool = freetext._pool(procs, None)
    return list(pool._processes)  # the workers, started by the warm-up call


def _cpu_seconds(pids: list[int]) -> dict[int, float]:
    """utime + stime of each process, from /proc (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        out[pid] = (int(fields[11]) + int(fields[12])) / tick
    return out


def _timed_ingests(rows: int, runs: int, ingest: Callable[[Path, Any], Any]) -> tuple[
        list[float], Any]:
    """Time ``ingest(csv_path, fresh_vault_home)`` once per run; returns the times and the
    last run's result. The clock covers everything after ``init``, file reading included."""
    from vault.home import VaultHome
    from vault.setup import init_home

    times: list[float] = []
    result = None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "voters.csv"
        voter_frame(rows).write_csv(path)
        for run in range(runs):
            home = VaultHome(root=Path(tmp) / f"home{run}")
            init_home(home)
            t0 = time.perf_counter()
            result = ingest(path, home)
            times.append(time.perf_counter() - t0)
    return times, result


def bench_ingest(rows: int, runs: int) -> dict[str, Any] | None:
    """End-to-end ingest of ``rows`` synthetic voter rows (12 structured columns).

    A fresh embedded vault home (``init``) per run, then ``vault.ingest.ingest_path``
    as the CLI runs it: read, classify once, apply the policy, seal, store, ledger.
    """
    from vault.access import authenticate
    from vault.db import make_engine
    from vault.ingest import IngestReport, ingest_path

    def one(path: Path, home: Any) -> IngestReport:
        engine = make_engine(home.db_url)
        try:
            report = ingest_path(engine, home, authenticate(engine, home, None), path, "bench")
        finally:
            engine.dispose()
        assert report.rows_added == rows, report
        return report

    times, report = _timed_ingests(rows, runs, one)
    elapsed = statistics.median(times)
    return {"rows": rows, "runs": runs, "seconds": round(elapsed, 2),
            "all_seconds": [round(t, 2) for t in times],
            "rows_per_second": round(rows / elapsed),
            "columns": {c["name"]: c["handling"] for c in report.columns},
            "lookup_columns": [c["name"] for c in report.columns if c["lookup_key"]]}


def bench_ingest_flow(rows: int, runs: int) -> dict[str, Any]:
    """The same ingest through the Prefect ``ingest`` flow (what ``civicvault ingest``
    runs when Prefect is configured), under a temporary Prefect server."""
    from prefect.testing.utilities import prefect_test_harness

    from flows.ingest import ingest_flow

    def one(path: Path, home: Any) -> dict[str, Any]:
        report = ingest_flow()(path=str(path), dataset="bench", home=str(home.root),
                               token_file=str(home.root / "admin.token"))
        assert report["rows_added"] == rows, report
        return report

    with prefect_test_harness(server_startup_timeout=120):
        times, _ = _timed_ingests(rows, runs, one)
    return {"rows": rows, "runs": runs, "seconds": round(statistics.median(times), 2),
            "all_seconds": [round(t, 2) for t in times]}


def recall_table(dataset: Path) -> str:
    """Per-entity recall on presidio-research's synth_dataset_v2 as a Markdown table."""
    import gzip

    from vault.pii.evaluation import LABEL_MAP, score_spans
    from vault.pii.freetext import find_spans

    with gzip.open(dataset, "rt", encoding="utf-8") as fh:
        records = json.load(fh)
    t0 = time.perf_counter()
    predicted = find_spans([r["full_text"] for r in records])
    elapsed = time.perf_counter() - t0
    score = score_spans(
        [[(s["start_position"], s["end_position"], s["entity_type"]) for s in r["spans"]]
         for r in records],
        predicted,
    )
    rows = [
        "| gold label | spans | redacted recall | typed recall | counted as typed when labelled |",
        "|---|---:|---:|---:|---|",
    ]
    for label, (total, red, typed) in sorted(score.by_label.items(), key=lambda kv: -kv[1][0]):
        mapped = ", ".join(sorted(LABEL_MAP.get(label, frozenset()))) or "-"
        rows.append(f"| {label} | {total} | {red / total:.3f} | {typed / total:.3f} | {mapped} |")
    rows.append(f"| **all** | **{score.total}** | **{score.redacted_recall:.3f}** | "
                f"**{score.typed_recall:.3f}** | |")
    rows.append("")
    rows.append(f"Predicted spans: {score.predicted}; {score.span_precision:.3f} of them touch "
                "a gold span (lenient precision).")
    rows.append("")
    rows.append(f"{len(records)} texts in {elapsed:.1f} s on one core "
                f"({len(records) / elapsed:.0f} texts/s), model `{model_name()}`.")
    return "\n".join(rows)


def _score(records: list[dict[str, Any]]) -> tuple[Any, float]:
    from vault.pii.evaluation import score_spans
    from vault.pii.freetext import find_spans

    t0 = time.perf_counter()
    predicted = find_spans([r["full_text"] for r in records])
    elapsed = time.perf_counter() - t0
    gold = [[(s["start_position"], s["end_position"], s["entity_type"]) for s in r["spans"]]
            for r in records]
    return score_spans(gold, predicted), elapsed


NOTE_SEEDS = (11, 12)  # the held-out canvass corpus: 2 seeds x NOTES_PER_SEED notes
NOTES_PER_SEED = 400


TRANSFER_SEEDS = (301, 302)  # the dev-transfer set: 2 seeds x 400 texts


def transfer_records() -> list[dict[str, Any]]:
    """The presidio-style dev-transfer set (``vault.pii.corpus_transfer``)."""
    from vault.pii.corpus import generate_notes
    from vault.pii.corpus_transfer import TRANSFER_SLOTS, TRANSFER_TEMPLATES

    return [r for seed in TRANSFER_SEEDS
            for r in generate_notes(TRANSFER_TEMPLATES, 400, seed, TRANSFER_SLOTS)]


def evaluation_sets(dataset: Path | None) -> dict[str, list[dict[str, Any]]]:
    """The development and held-out text sets, by name (see docs/PII.md)."""
    import gzip

    from vault.pii.corpus import DEV_TEMPLATES, DEV_TEMPLATES_2, generate_notes
    from vault.pii.corpus_heldout import TEMPLATES as HELDOUT_TEMPLATES
    from vault.pii.evaluation import split_of

    sets: dict[str, list[dict[str, Any]]] = {}
    if dataset is not None:
        with gzip.open(dataset, "rt", encoding="utf-8") as fh:
            records = json.load(fh)
        sets["presidio dev"] = [r for r in records if split_of(r["template_id"]) == "dev"]
        sets["presidio held-out"] = [r for r in records
                                     if split_of(r["template_id"]) == "heldout"]
    sets["canvass dev"] = [r for seed in NOTE_SEEDS
                           for r in generate_notes(DEV_TEMPLATES, NOTES_PER_SEED, seed + 100)]
    sets["dev-transfer"] = transfer_records()
    sets["canvass dev 2"] = [r for seed in (201, 202)
                             for r in generate_notes(DEV_TEMPLATES_2, 200, seed)]
    for seed in NOTE_SEEDS:
        sets[f"canvass held-out seed {seed}"] = generate_notes(HELDOUT_TEMPLATES,
                                                                NOTES_PER_SEED, seed)
    return sets


def bench_cli_classify(rows: int, runs: int) -> dict[str, Any]:
    """``civicvault classify FILE --json`` as a user runs it (a new process each time, no
    vault: the default policy), on the six generated real layouts of
    ``tests/test_pii_state_layouts.py``: median wall-clock and CPU seconds (user + sys
    of the child; on a loaded machine the CPU time is what a quiet one would take)."""
    import resource
    import subprocess

    from tests.test_pii_state_layouts import FILES, LAYOUTS, generate

    exe = Path(sys.executable).with_name("civicvault")
    out: dict[str, Any] = {"rows": rows, "runs": runs,
                           "load_avg_start": round(os.getloadavg()[0], 1), "layouts": {}}
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIVICVAULT")}
    with tempfile.TemporaryDirectory() as tmp:
        env["CIVICVAULT_HOME"] = str(Path(tmp) / "no-vault")
        for state, layout in LAYOUTS.items():
            name, sep = FILES[state]
            path = Path(tmp) / name
            generate(layout, rows).write_csv(path, separator=sep)
            walls: list[float] = []
            cpus: list[float] = []
            for _ in range(runs):
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                subprocess.run([str(exe), "classify", str(path), "--json"], env=env,
                               check=True, stdout=subprocess.DEVNULL)
                walls.append(time.perf_counter() - t0)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            out["layouts"][state] = {"wall_s": round(statistics.median(walls), 2),
                                     "cpu_s": round(statistics.median(cpus), 2)}
        walls = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run([str(exe), "--help"], env=env, check=True, stdout=subprocess.DEVNULL)
            walls.append(time.perf_counter() - t0)
        out["cli_help_wall_s"] = round(statistics.median(walls), 2)
    out["load_avg_end"] = round(os.getloadavg()[0], 1)
    return out


def heldout_report(dataset: Path | None, labels: bool = False,
                   dev_only: bool = False) -> dict[str, Any]:
    """Recall and precision on each set; per-label counts only for the dev sets (rules
    are tuned on those; held-out failures are never looked at span by span)."""
    from vault.pii.engine import second_model_name

    out: dict[str, Any] = {"model": model_name(), "second_model": second_model_name(),
                           "load_avg_start": round(os.getloadavg()[0], 1), "sets": {}}
    for name, records in evaluation_sets(dataset).items():
        if dev_only and "held-out" in name:
            continue
        score, elapsed = _score(records)
        entry: dict[str, Any] = {
            "texts": len(records), "gold_spans": score.total,
            "templates": len({r["template_id"] for r in records}),
            "redacted_recall": round(score.redacted_recall, 3),
            "typed_recall": round(score.typed_recall, 3),
            "lenient_precision": round(score.span_precision, 3),
            "typed_precision": round(score.typed_precision, 3),
            "seconds": round(elapsed, 1),
        }
        if labels and "held-out" not in name:
            entry["by_label"] = {k: {"n": v[0], "redacted": round(v[1] / v[0], 3),
                                     "typed": round(v[2] / v[0], 3)}
                                 for k, v in sorted(score.by_label.items())}
        out["sets"][name] = entry
    out["load_avg_end"] = round(os.getloadavg()[0], 1)
    return out


def dev_errors(dataset: Path | None, limit: int = 40) -> str:
    """Per-label misses and per-entity false positives on the presidio **dev** split only
    (the held-out split is never read here), or on the dev-transfer set when ``dataset``
    is None: what to tune on. Prints dev text to the terminal; never commit its output."""
    import gzip
    from collections import Counter, defaultdict

    from vault.pii.evaluation import LABEL_MAP, split_of
    from vault.pii.freetext import find_spans

    if dataset is None:
        records = transfer_records()
    else:
        with gzip.open(dataset, "rt", encoding="utf-8") as fh:
            records = [r for r in json.load(fh) if split_of(r["template_id"]) == "dev"]
    predicted = find_spans([r["full_text"] for r in records])
    missed: dict[str, list[str]] = defaultdict(list)
    mistyped: dict[str, Counter[str]] = defaultdict(Counter)
    mistyped_ex: dict[str, list[str]] = defaultdict(list)
    false_pos: dict[str, list[str]] = defaultdict(list)
    wrong_type: dict[str, Counter[str]] = defaultdict(Counter)
    wrong_type_ex: dict[str, list[str]] = defaultdict(list)
    for r, pred in zip(records, predicted, strict=True):
        text = r["full_text"]
        gold = [(s["start_position"], s["end_position"], s["entity_type"]) for s in r["spans"]]
        for start, end, label in gold:
            need = 0.5 * (end - start)
            covered = sum(max(0, min(end, p.end) - max(start, p.start)) for p in pred)
            typed = sum(max(0, min(end, p.end) - max(start, p.start)) for p in pred
                        if p.entity in LABEL_MAP.get(label, frozenset()))
            ctx = f"{text[max(0, start - 30):start]}[[{text[start:end]}]]{text[end:end + 30]}"
            ctx = ctx.replace("\n", "\\n")
            if covered < need:
                missed[label].append(ctx)
            elif typed < need:
                got = "+".join(sorted({p.entity for p in pred
                                       if min(end, p.end) > max(start, p.start)}))
                mistyped[label][got] += 1
                mistyped_ex[f"{label}<-{got}"].append(ctx)
        for p in pred:
            touching = [g for s, e, g in gold if min(p.end, e) > max(p.start, s)]
            ctx = f"{text[max(0, p.start - 30):p.start]}[[{text[p.start:p.end]}]]" \
                  f"{text[p.end:p.end + 30]}".replace("\n", "\\n")
            if not touching:
                false_pos[p.entity].append(ctx)
            elif not any(p.entity in LABEL_MAP.get(g, frozenset()) for g in touching):
                key = "+".join(sorted(set(touching)))
                wrong_type[p.entity][key] += 1
                wrong_type_ex[f"{p.entity}->{key}"].append(ctx)
    what = "dev-transfer set" if dataset is None else "presidio DEV split"
    lines = [f"{what}: {len(records)} texts"]
    lines.append("\n== missed (not redacted), by gold label ==")
    for label, xs in sorted(missed.items(), key=lambda kv: -len(kv[1])):
        lines.append(f"-- {label}: {len(xs)}")
        lines += [f"   {x}" for x in xs[:limit]]
    lines.append("\n== redacted but mistyped, gold label <- predicted ==")
    for key, xs in sorted(mistyped_ex.items(), key=lambda kv: -len(kv[1])):
        lines.append(f"-- {key}: {len(xs)}")
        lines += [f"   {x}" for x in xs[:limit]]
    lines.append("\n== predicted spans touching no gold span, by predicted entity ==")
    for ent, xs in sorted(false_pos.items(), key=lambda kv: -len(kv[1])):
        lines.append(f"-- {ent}: {len(xs)}")
        lines += [f"   {x}" for x in xs[:limit]]
    lines.append("\n== predicted spans touching only gold of another type, predicted -> gold ==")
    for key, xs in sorted(wrong_type_ex.items(), key=lambda kv: -len(kv[1])):
        lines.append(f"-- {key}: {len(xs)}")
        lines += [f"   {x}" for x in xs[:limit]]
    return "\n".join(lines)


# --- report -------------------------------------------------------------------------


def render(result: dict[str, Any]) -> str:
    c = result["classify"]
    n = result["naive"]
    f = result["freetext"]
    sizes = list(c)
    lines = [
        SECTION,
        "",
        f"`python bench/pii.py{' --flow' if result.get('ingest_flow') else ''} --write-docs` "
        f"({result['when']}, {result['machine']}, "
        f"spaCy model `{result['model']}`; synthetic rows only; 1-min load average "
        f"{result['load_avg_start']} at start, {result['load_avg_end']} at end; ratios are "
        "measured in the same run).",
        "",
        "Column classification (12 structured voter columns; cache cleared before each "
        "timing, median of runs):",
        "",
        "| rows | classify (cold) | classify (cached, same schema) |",
        "|---:|---:|---:|",
    ]
    for rows in sizes:
        lines.append(f"| {int(rows):,} | {c[rows]['cold_s'] * 1000:.0f} ms | "
                     f"{c[rows]['cached_s'] * 1e6:.0f} µs |")
    lines += [
        "",
        f"Baseline, naive Presidio `analyze()` per cell (measured on {n['cells_measured']} "
        f"cells in the same run): **{n['cells_per_s']} cells/s**, i.e. "
        f"~{n['extrapolated_s']:,.0f} s for the {n['extrapolated_cells']:,} cells of the "
        f"{int(sizes[-1]):,}-row frame, against "
        f"{c[sizes[-1]]['cold_s'] * 1000:.0f} ms for classification.",
        "",
        f"Free text ({f['texts']} synthetic canvass notes, one core, median of "
        f"{f['rounds']} alternating rounds): raw `nlp.pipe` of the model as shipped "
        f"{f['raw_nlp_pipe_texts_per_s']} texts/s; `redact_texts` "
        f"{f['redact_texts_per_s']} texts/s = **{f['ratio_vs_raw_pipe']}x raw `nlp.pipe`**. "
        "Our engine skips the dependency parser, which Presidio never reads; against raw "
        "`nlp.pipe` of the same components (no parser, "
        f"{f['raw_nlp_pipe_same_components_texts_per_s']} texts/s) the ratio is "
        f"{f['ratio_vs_same_components']}x: that is the cost of Presidio's recognizers.",
        "",
        f"Processes (warm worker pool; starting the 2 workers took {f['worker_startup_s']} s, "
        "paid once per process):",
        "",
        "| processes | texts | warm call s | texts/s | CPU-s of busiest process |",
        "|---:|---:|---:|---:|---:|",
    ]
    for procs, s in f["scaling"].items():
        lines.append(f"| {procs} | {s['texts']} | {s['warm_s']} | {s['warm_texts_per_s']} | "
                     f"{s['busiest_process_cpu_s']} |")
    lines += [
        "",
        f"Wall-clock speed-up with 2 processes: **{f['speedup_2_vs_1']}x**; CPU time of the "
        f"busiest process drops **{f['cpu_speedup_2_vs_1']}x** (the work splits evenly; the "
        "wall-clock gain is what other jobs on the 2 cores leave).",
    ]
    ingest = result.get("ingest")
    if ingest:
        handling = ", ".join(f"{k} {v}" for k, v in ingest["columns"].items())
        lines += [
            "",
            f"End-to-end ingest of {ingest['rows']:,} rows with 12 structured columns "
            "(`bench_ingest`: a fresh vault home per run, then `vault.ingest.ingest_path` "
            "exactly as `civicvault ingest` runs it: read the CSV, classify once, apply the "
            "policy, generalise, seal, store, ledger; lookup columns blind-indexed: "
            f"{', '.join(ingest['lookup_columns']) or 'none'}): **{ingest['seconds']} s**, "
            f"median of {ingest['runs']} ({', '.join(map(str, ingest['all_seconds']))} s), "
            f"{ingest['rows_per_second']:,} rows/s; goal <= 20 s. The naive per-cell "
            f"baseline above would take ~{n['extrapolated_s']:,.0f} s. Handling: {handling}.",
        ]
        flow_run = result.get("ingest_flow")
        if flow_run:
            lines += [
                "",
                f"The same {flow_run['rows']:,} rows through the Prefect `ingest` flow (what "
                "`civicvault ingest` runs when Prefect is configured; `--flow`, temporary "
                f"server): **{flow_run['seconds']} s**, median of {flow_run['runs']} "
                f"({', '.join(map(str, flow_run['all_seconds']))} s).",
            ]
    else:
        lines += ["", "End-to-end ingest: not measured (`--ingest-rows 0`)."]
    lines.append("")
    return "\n".join(lines)


def write_docs(section: str) -> None:
    text = DOCS.read_text(encoding="utf-8") if DOCS.exists() else "# Benchmarks\n"
    start = text.find(SECTION)
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        nxt = text.find("\n## ", start + len(SECTION))
        text = text[:start] + section + ("" if nxt == -1 else "\n" + text[nxt + 1 :])
    DOCS.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="10000,100000,1000000")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--texts", type=int, default=600)
    ap.add_argument("--scale-texts", type=int, default=3000)
    ap.add_argument("--naive-cells", type=int, default=240)
    ap.add_argument("--ingest-rows", type=int, default=1_000_000)
    ap.add_argument("--flow", action="store_true",
                    help="also time the ingest through the Prefect flow (temporary server)")
    ap.add_argument("--write-docs", action="store_true")
    ap.add_argument("--recall", type=Path, metavar="SYNTH_JSON_GZ",
                    help="only print the per-entity recall table for this dataset")
    ap.add_argument("--heldout", type=Path, metavar="SYNTH_JSON_GZ", nargs="?", const=Path("-"),
                    help="only print recall/precision on the dev and held-out splits of this "
                         "dataset and on the generated canvass notes")
    ap.add_argument("--cpu-notes", type=int, metavar="N",
                    help="only print the CPU seconds of redact_texts on N synthetic canvass "
                         "notes (one process, median of --runs)")
    ap.add_argument("--dev-errors", type=Path, metavar="SYNTH_JSON_GZ",
                    help="print misses and false positives of the presidio DEV split only "
                         "(terminal only; never commit the output)")
    ap.add_argument("--transfer-errors", action="store_true",
                    help="like --dev-errors, on the dev-transfer set (vault.pii.corpus_transfer)")
    ap.add_argument("--dev-only", action="store_true",
                    help="with --heldout: score the development sets only (no held-out set "
                         "is scored)")
    ap.add_argument("--labels", action="store_true",
                    help="with --heldout: per-label figures of the dev sets")
    ap.add_argument("--freetext-only", action="store_true",
                    help="only time redaction throughput (texts/s vs raw nlp.pipe, 1 and 2 "
                         "processes) on --texts and --scale-texts synthetic notes")
    ap.add_argument("--classify-only", action="store_true",
                    help="only time classification: in-process at --rows, and through the CLI "
                         "on 600-row files of six real layouts")
    args = ap.parse_args()
    if args.scale_texts < PARALLEL_MIN:
        ap.error(f"--scale-texts must be at least {PARALLEL_MIN:,}: fewer run in one process "
                 "and there is no two-process scaling to time")
    if args.classify_only:
        sizes = [int(s) for s in args.rows.split(",")]
        print(json.dumps({"load_avg_start": round(os.getloadavg()[0], 1),
                          "classify": bench_classify(sizes, args.runs),
                          "cli": bench_cli_classify(600, args.runs),
                          "load_avg_end": round(os.getloadavg()[0], 1)}, indent=2))
        return
    if args.freetext_only:
        print(json.dumps({"model": model_name(), "load_avg_start": round(os.getloadavg()[0], 1),
                          "freetext": bench_freetext(args.texts, args.scale_texts),
                          "load_avg_end": round(os.getloadavg()[0], 1)}, indent=2))
        return
    if args.cpu_notes is not None:
        notes = canvass_notes(args.cpu_notes)
        redact_texts(notes[:50])  # model and recognizers loaded
        cpu: list[float] = []
        for _ in range(args.runs):
            t0 = time.process_time()
            redact_texts(notes, n_process=1)
            cpu.append(time.process_time() - t0)
        print(json.dumps({"texts": args.cpu_notes, "cpu_s": [round(c, 2) for c in cpu],
                          "median_cpu_s": round(statistics.median(cpu), 2),
                          "load_avg": round(os.getloadavg()[0], 1)}))
        return
    if args.transfer_errors:
        print(dev_errors(None))
        return
    if args.dev_errors is not None:
        print(dev_errors(args.dev_errors))
        return
    if args.heldout is not None:
        data = None if str(args.heldout) == "-" else args.heldout
        print(json.dumps(heldout_report(data, args.labels, args.dev_only), indent=2))
        return
    if args.recall is not None:
        print(recall_table(args.recall))
        return
    sizes = [int(s) for s in args.rows.split(",")]
    get_analyzer()
    result: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} cores, {platform.python_implementation()} "
                   f"{platform.python_version()}",
        "model": model_name(),
        "load_avg_start": round(os.getloadavg()[0], 1),
        "classify": bench_classify(sizes, args.runs),
        "naive": bench_naive(args.naive_cells, sizes[-1]),
        "freetext": bench_freetext(args.texts, args.scale_texts),
        "ingest": bench_ingest(args.ingest_rows, args.runs) if args.ingest_rows else None,
        "ingest_flow": (bench_ingest_flow(args.ingest_rows, args.runs)
                        if args.ingest_rows and args.flow else None),
    }
    result["load_avg_end"] = round(os.getloadavg()[0], 1)
    print(json.dumps(result, indent=2))
    if args.write_docs:
        write_docs(render(result))


if __name__ == "__main__":
    main()
