"""A registry refuses, when an entry is registered, an entry without the extras its kind declares; the
code reads those extras from every entry (an activation's negative_slope for the He gain, a model's
min_image_size, whether a pre-processing needs the whitening matrices). The params check of the last
one reads the registry, so a new whitening entry needs no edit of params.py.
"""
from __future__ import annotations

import pytest

from conftest import tiny_params
from trickbench.catalog import REGISTRY_LOCATIONS, registry, registry_extras, registry_names
from trickbench.errors import ParamsError
from trickbench.params import validate
from trickbench.registry import Registry


def test_an_entry_without_a_declared_extra_is_refused_at_registration():
    sizes = Registry("widget", extras=("size", "colour"))
    with pytest.raises(TypeError, match=r"widget 'small' registered without colour; every widget declares size, colour"):
        @sizes.register("small", "a small widget", size=1)
        def small() -> None: ...
    assert "small" not in sizes and len(sizes) == 0  # nothing half-registered
    sizes.add("large", lambda: None, "a large widget", size=9, colour="red", note="extras beyond the declared")
    assert sizes.entry("large").extra == {"size": 9, "colour": "red", "note": "extras beyond the declared"}
    Registry("free").add("any", lambda: None, "no extras declared")  # a kind that declares none takes any entry


@pytest.mark.parametrize("kind, extra", [("activation", "negative_slope"), ("model", "min_image_size"),
                                         ("preprocessing", "needs_whitening")])
def test_the_real_registries_refuse_an_entry_without_what_the_code_reads(kind, extra):
    entries = registry(kind)
    before = entries.names()
    with pytest.raises(TypeError, match=f"{kind} 'newcomer' registered without {extra}"):
        entries.add("newcomer", lambda *args, **kwargs: None, "an entry that forgot its extras")
    assert entries.names() == before
    assert all(extra in entry.extra for entry in entries)


def test_the_claims_registry_declares_the_claim():
    from trickbench.claims import CLAIMS

    assert CLAIMS.extras == ("claim",)
    with pytest.raises(TypeError, match="registered without claim"):
        CLAIMS.add("newcomer", lambda data: None, "a claim without its Claim")


def test_the_cached_catalog_keeps_registration_order_and_the_declared_extras():
    names, extras = registry_names(), registry_extras()
    for kind in REGISTRY_LOCATIONS:
        entries = registry(kind)
        assert names[kind] == entries.names()
        assert extras[kind] == {entry.name: {key: entry.extra[key] for key in entries.extras} for entry in entries}


@pytest.mark.parametrize("preprocessing", registry_names()["preprocessing"])
def test_stats_without_whitening_refuses_exactly_the_preprocessings_that_need_it(preprocessing):
    params = tiny_params()
    params["train"]["preprocessing"] = preprocessing
    params["stats"] = {"whitening": False}
    if registry("preprocessing").entry(preprocessing).extra["needs_whitening"]:
        with pytest.raises(ParamsError, match=f"{preprocessing} needs the whitening matrices, but stats.whitening "
                                              "is false"):
            validate(params, "p.yaml")
    else:
        assert validate(params, "p.yaml")["train"]["preprocessing"] == preprocessing
    params["stats"] = {"whitening": True}
    assert validate(params, "p.yaml")["stats"]["whitening"] is True
