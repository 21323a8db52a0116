"""A seeded, synthetic North Carolina voter file with canvass notes, for the demo and tests.

Every value is fake. Faker (seeded) fills small pools of names, streets, cities and
e-mail domains once; NumPy (seeded) then samples whole columns from the pools, so
100,000 rows take well under a second instead of a million Faker calls. The same
``(rows, seed)`` always gives byte-identical output.

Columns follow the North Carolina State Board of Elections extract where it has
one (so the default policy's segment rules apply): ``ncid`` (voter id),
``first_name``, ``last_name``, ``res_street_address``, ``res_city_desc``,
``zip_code``, ``full_phone_number``, ``email_address``, ``birth_date``, ``birth_age``,
``age_band``, ``county_id``, ``county_desc``, ``party_cd`` (DEM/REP/UNA/LIB/GRE/CST),
``race_code``, ``ethnic_code``, ``gender_code``, ``precinct_abbrv``, ``registr_dt``,
``voted_2024`` (turnout flag) and ``canvass_notes`` (free text that sometimes names
the voter, a phone number or an address).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
from faker import Faker

NC_COUNTIES = (
    "ALAMANCE", "ALEXANDER", "ALLEGHANY", "ANSON", "ASHE", "AVERY", "BEAUFORT", "BERTIE",
    "BLADEN", "BRUNSWICK", "BUNCOMBE", "BURKE", "CABARRUS", "CALDWELL", "CAMDEN", "CARTERET",
    "CASWELL", "CATAWBA", "CHATHAM", "CHEROKEE", "CHOWAN", "CLAY", "CLEVELAND", "COLUMBUS",
    "CRAVEN", "CUMBERLAND", "CURRITUCK", "DARE", "DAVIDSON", "DAVIE", "DUPLIN", "DURHAM",
    "EDGECOMBE", "FORSYTH", "FRANKLIN", "GASTON", "GATES", "GRAHAM", "GRANVILLE", "GREENE",
    "GUILFORD", "HALIFAX", "HARNETT", "HAYWOOD", "HENDERSON", "HERTFORD", "HOKE", "HYDE",
    "IREDELL", "JACKSON", "JOHNSTON", "JONES", "LEE", "LENOIR", "LINCOLN", "MACON", "MADISON",
    "MARTIN", "MCDOWELL", "MECKLENBURG", "MITCHELL", "MONTGOMERY", "MOORE", "NASH",
    "NEW HANOVER", "NORTHAMPTON", "ONSLOW", "ORANGE", "PAMLICO", "PASQUOTANK", "PENDER",
    "PERQUIMANS", "PERSON", "PITT", "POLK", "RANDOLPH", "RICHMOND", "ROBESON", "ROCKINGHAM",
    "ROWAN", "RUTHERFORD", "SAMPSON", "SCOTLAND", "STANLY", "STOKES", "SURRY", "SWAIN",
    "TRANSYLVANIA", "TYRRELL", "UNION", "VANCE", "WAKE", "WARREN", "WASHINGTON", "WATAUGA",
    "WAYNE", "WILKES", "WILSON", "YADKIN", "YANCEY",
)
PARTIES = ("DEM", "REP", "UNA", "LIB", "GRE", "CST")
PARTY_WEIGHTS = (0.33, 0.30, 0.355, 0.01, 0.0025, 0.0025)
RACES = ("W", "B", "A", "I", "M", "O", "U")
RACE_WEIGHTS = (0.62, 0.21, 0.03, 0.01, 0.02, 0.05, 0.06)
ETHNICITIES = ("NL", "HL", "UN")
ETHNICITY_WEIGHTS = (0.80, 0.05, 0.15)
GENDERS = ("F", "M", "U")
GENDER_WEIGHTS = (0.52, 0.45, 0.03)
STREET_SUFFIXES = ("RD", "ST", "DR", "LN", "AVE", "CT", "WAY", "BLVD", "TRL", "CIR")
AREA_CODES = ("919", "984", "704", "980", "336", "743", "828", "910", "252")
NC_CITIES = (
    "RALEIGH", "CHARLOTTE", "GREENSBORO", "DURHAM", "WINSTON-SALEM", "FAYETTEVILLE", "CARY",
    "WILMINGTON", "HIGH POINT", "CONCORD", "ASHEVILLE", "GREENVILLE", "GASTONIA", "JACKSONVILLE",
    "CHAPEL HILL", "APEX", "HUNTERSVILLE", "BURLINGTON", "ROCKY MOUNT", "KANNAPOLIS", "WILSON",
    "HICKORY", "SANFORD", "PITTSBORO", "SILER CITY", "BOONE", "MORGANTON", "SALISBURY",
)
NOTE_TOPICS = (
    "supports the school bond", "undecided on the county commission race",
    "asked about early voting hours", "wants a yard sign", "concerned about road repairs",
    "asked for an absentee ballot request form", "prefers text reminders",
    "not interested, polite", "moved recently, update address on file",
    "volunteer prospect for phone bank", "asked about polling place accessibility",
    "strong supporter, will bring family", "worried about property taxes",
)
NOTE_KIND_WEIGHTS = (0.24, 0.05, 0.04, 0.03, 0.64)  # routine, name, phone, address, none
AGE_BANDS = ((18, 24), (25, 34), (35, 44), (45, 54), (55, 64), (65, 74), (75, 200))
AS_OF = dt.date(2026, 11, 3)
POOL_SIZES = {"first": 1500, "last": 3000, "street": 2500}
DEFAULT_SEED = 20261103


def _pools(seed: int) -> dict[str, list[str]]:
    fake = Faker("en_US")
    fake.seed_instance(seed)
    firsts = sorted({fake.first_name().upper() for _ in range(POOL_SIZES["first"])})
    lasts = sorted({fake.last_name().upper() for _ in range(POOL_SIZES["last"])})
    streets = sorted({fake.street_name().upper().rsplit(" ", 1)[0]
                      for _ in range(POOL_SIZES["street"])})
    domains = sorted({fake.free_email_domain() for _ in range(50)})
    return {"first": firsts, "last": lasts, "street": streets, "domain": domains}


def _pick(rng: np.random.Generator, pool: tuple[str, ...] | list[str], n: int,
          weights: tuple[float, ...] | None = None) -> np.ndarray:
    p = None if weights is None else np.asarray(weights) / np.sum(weights)
    return np.asarray(pool, dtype=object)[rng.choice(len(pool), size=n, p=p)]


def _dates(rng: np.random.Generator, start: dt.date, end_days: np.ndarray) -> pl.Series:
    """Dates ``start + U[0, end_days)`` per row, as a polars Date series."""
    offsets = (rng.random(end_days.shape[0]) * end_days).astype("int64")
    base = np.datetime64(start.isoformat(), "D")
    return pl.Series((base + offsets.astype("timedelta64[D]")).astype("datetime64[D]"))


def generate(rows: int, seed: int = DEFAULT_SEED) -> pl.DataFrame:
    """``rows`` synthetic voters; deterministic in ``(rows, seed)``."""
    if rows < 1:
        raise ValueError("rows must be >= 1")
    pools = _pools(seed)
    rng = np.random.default_rng(seed)
    n = rows

    first = _pick(rng, pools["first"], n)
    last = _pick(rng, pools["last"], n)
    house = rng.integers(1, 9999, size=n)
    street = _pick(rng, pools["street"], n)
    suffix = _pick(rng, STREET_SUFFIXES, n)
    address = [f"{h} {s} {x}" for h, s, x in zip(house, street, suffix, strict=True)]
    area = _pick(rng, AREA_CODES, n)
    exchange = rng.integers(200, 999, size=n)
    line = rng.integers(0, 10_000, size=n)
    phone = [f"({a}) {e}-{ln:04d}" for a, e, ln in zip(area, exchange, line, strict=True)]
    email_n = rng.integers(1, 999, size=n)
    domain = _pick(rng, pools["domain"], n)
    email = [f"{f.lower()}.{la.lower().replace(' ', '')}{k}@{d}"
             for f, la, k, d in zip(first, last, email_n, domain, strict=True)]

    today = AS_OF
    birth_start = dt.date(1930, 1, 1)
    birth_span = (today - birth_start).days - 18 * 366
    birth = _dates(rng, birth_start, np.full(n, birth_span))
    # registered some time between the 18th birthday and the last registration deadline
    eligible = birth.cast(pl.Int64).to_numpy() + 18 * 366
    deadline = (dt.date(2026, 10, 9) - dt.date(1970, 1, 1)).days
    reg_offsets = (rng.random(n) * np.maximum(deadline - eligible, 1)).astype("int64")
    registration = pl.Series((eligible + reg_offsets).astype("datetime64[D]"))

    county_idx = rng.choice(len(NC_COUNTIES), size=n)
    county = np.asarray(NC_COUNTIES, dtype=object)[county_idx]
    precinct = [f"{c[:3].replace(' ', '')}{p:03d}"
                for c, p in zip(county, rng.integers(1, 60, size=n), strict=True)]
    party = _pick(rng, PARTIES, n, PARTY_WEIGHTS)
    race = _pick(rng, RACES, n, RACE_WEIGHTS)
    ethnicity = _pick(rng, ETHNICITIES, n, ETHNICITY_WEIGHTS)
    gender = _pick(rng, GENDERS, n, GENDER_WEIGHTS)
    age = (today - dt.date(1970, 1, 1)).days - birth.cast(pl.Int64).to_numpy()
    turnout_p = np.clip(0.35 + age / 365.25 / 150.0, 0.0, 0.95)
    voted = rng.random(n) < turnout_p
    city = _pick(rng, NC_CITIES, n)
    zip_code = [f"{z:05d}" for z in rng.integers(27006, 28910, size=n)]
    voter_id = [f"NC{v:09d}" for v in rng.permutation(np.arange(n) + 100_000_000)]

    topic = _pick(rng, NOTE_TOPICS, n)
    # most voters were never reached (no note); most notes are routine; some name the
    # voter, a phone number or an address (the free text the PII scanner must catch)
    kind = rng.choice(5, size=n, p=NOTE_KIND_WEIGHTS)
    notes: list[str | None] = []
    for i in range(n):
        k = kind[i]
        if k == 0:
            notes.append(f"Door knock: {topic[i]}.")
        elif k == 1:
            notes.append(f"Spoke with {first[i].title()} {last[i].title()}, {topic[i]}.")
        elif k == 2:
            notes.append(f"Call back at {phone[i]}; {topic[i]}.")
        elif k == 3:
            notes.append(f"Left flyer at {address[i].title()}, {city[i].title()}; {topic[i]}.")
        else:
            notes.append(None)

    years = np.floor(age / 365.25).astype("int64")
    band_names = np.asarray([f"{lo}-{hi}" if hi < 200 else f"{lo}+" for lo, hi in AGE_BANDS],
                            dtype=object)
    band = band_names[np.searchsorted([lo for lo, _ in AGE_BANDS], years, side="right") - 1]

    return pl.DataFrame({
        "ncid": voter_id,
        "first_name": first.tolist(),
        "last_name": last.tolist(),
        "res_street_address": address,
        "res_city_desc": city.tolist(),
        "zip_code": zip_code,
        "full_phone_number": phone,
        "email_address": email,
        "birth_date": birth,
        "birth_age": years,
        "age_band": band.tolist(),
        "county_id": county_idx + 1,
        "county_desc": county.tolist(),
        "party_cd": party.tolist(),
        "race_code": race.tolist(),
        "ethnic_code": ethnicity.tolist(),
        "gender_code": gender.tolist(),
        "precinct_abbrv": precinct,
        "registr_dt": registration,
        "voted_2024": voted,
        "canvass_notes": pl.Series(notes, dtype=pl.Utf8),
    })


def write_csv(path: Path, rows: int, seed: int = DEFAULT_SEED) -> Path:
    """Write the synthetic file as CSV (what election offices publish) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    generate(rows, seed).write_csv(path)
    return path
