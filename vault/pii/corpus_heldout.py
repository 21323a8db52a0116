"""Held-out canvass-note templates (see :mod:`vault.pii.corpus`).

Written and committed before any detection rule was tuned against them. Do not tune
on these: read only the overall figures that ``bench/pii.py --heldout`` prints,
never which template or which span failed. Slots are those of
:data:`vault.pii.corpus.SLOTS`.
"""

from __future__ import annotations

__all__ = ["TEMPLATES"]

TEMPLATES: tuple[str, ...] = (
    "talked to {name_lc} at {street_lc}, strong supporter, wants a yard sign. cell {phone}",
    "{first} ({age}) said come back {date} {time}",
    "NOT HOME - left lit at {street_apt}. neighbor {name} says they moved to {city}",
    "{name} is undecided on {issue}. best # {phone}, email {email}",
    "spoke w/ {first_lc} {last_lc} re: {issue}, {pron} works at {org}",
    "vol signup: {name}, {phone}, avail {date} and {date}",
    "moved out -- new addr {street_lc} {city_lc} {zip}",
    "{name_lc} hostile, asked us not to return. mark DNC",
    "ride to polls requested for {date}, pickup {street_apt}, call {first} at {phone}",
    "{first_lc}'s daughter {first} just turned {age}, register her",
    "Mrs {last} on {street} asked about {issue} -- {stance}",
    "left voicemail {phone} on {date}",
    "{name} {apt}: {stance}, wants info on {issue} sent to {email}",
    "knocked {street_apt_lc}: {first_lc} answered, {stance}",
    "Son {first} (age {age}) will vote early, {date}",
    "re-knock {date}. {name_lc} was cooking, said try {time}",
    "{mr_last} at {street_lc} is a retired teacher, {stance} on {issue}",
    "Contact: {name} / {phone} / {email}",
    "caller {first} from {city} asked if polling place changed; {pron} lives {street_lc}",
    "{name} and {name} both at {street}, {apt}. {stance}",
    "dog in yard at {street_lc}, skip. owner {name_lc}",
    "wrong number {phone}, real # is {phone}",
    "Met at farmers market {date}: {name}, {email}",
    "{first} volunteers Saturdays, phone {phone}, lives near {street}",
    "household {last_lc}: {n} voters, mom {first_lc} is {age}",
    "Spanish speaker, {name} prefers text {phone}",
    "absentee ballot mailed {date} to {street_apt}, {city} {zip}",
    "{first_lc} {last_lc} works for {org}, asked for yard sign delivered {date}",
    "follow up w/ {name} on {date} about {issue}",
    "{name_lc} {phone}",
    "deceased per family ({first} {last}), remove from list {date}",
    "apt complex on {street_lc}: {apt} and {apt} both supportive",
    "{pron} said call {phone} or {phone} before {date}",
    "Pastor {last} at {org} may host a forum {date}",
    "{first} {last} ({age}) new registrant, address {street_apt_lc}",
    "{mr_last} requested no more mail at {street}",
    "lives w/ grandson {first_lc}; best time {time}; {phone}",
    "event guest {name}, {city}, {email}",
    "spoke with {name} at {street_lc} {apt} -- {stance}, {n} in household",
    "{email} bounced; use {phone} for {first}",
)
