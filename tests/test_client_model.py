"""The Client's dataclasses (weft.client) compare, hash, print and freeze as `@dataclass(frozen=True)` would
make them: they share those methods (weft.client.model.Record) instead of compiling them per class."""

from __future__ import annotations

import dataclasses

import pytest

import weft.client

NAMES = [n for n in weft.client.__all__ if dataclasses.is_dataclass(getattr(weft.client, n))]


def test_every_public_class_of_the_client_is_a_frozen_dataclass_of_its_own():
    assert len(NAMES) == 29 and "Run" in NAMES and "Schedule" in NAMES  # (Schedule: made on first use)


@pytest.mark.parametrize("name", NAMES)
def test_equality_hash_repr_and_freezing_are_those_of_a_frozen_dataclass(name):
    cls = getattr(weft.client, name)
    fs = dataclasses.fields(cls)
    same = dataclasses.make_dataclass(
        name, [(f.name, f.type, dataclasses.field(compare=f.compare, repr=f.repr)) for f in fs], frozen=True
    )
    values = [i if i % 2 else (i, "x") for i in range(len(fs))]
    made, twin = cls(*values), same(*values)
    assert repr(made) == repr(twin) and hash(made) == hash(twin)
    assert made == cls(*values) and made != twin and made != cls("other", *values[1:])
    assert dataclasses.asdict(made) == dataclasses.asdict(twin)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.extra = 1
