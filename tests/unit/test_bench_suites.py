"""The generated suites: sizes, kinds, and a holdout that shares no scene with the others."""

from __future__ import annotations

import json

from imagic_kit.bench.suites import KINDS, load_suite, make_suite


def _scenes(suite):
    return {json.dumps(e["scene"], sort_keys=True) for e in suite["edits"]}


def test_the_holdout_suite_is_drawn_as_full_from_another_stream():
    full, holdout = make_suite("full"), load_suite("holdout")
    assert len(holdout["edits"]) == len(full["edits"]) == 48
    assert [e["kind"] for e in holdout["edits"]] == [e["kind"] for e in full["edits"]]
    assert [e["id"] for e in holdout["edits"]] == [e["id"] for e in full["edits"]]
    assert holdout["name"] == "holdout" and set(KINDS) == {e["kind"] for e in holdout["edits"]}
    others = set()
    for seed in range(4):  # no small seed of the other suites draws its scenes
        others |= _scenes(make_suite("full", seed)) | _scenes(make_suite("quick", seed))
    assert not _scenes(holdout) & others
    assert make_suite("holdout") == holdout  # the same every time
    assert _scenes(make_suite("holdout", seed=1)) != _scenes(holdout)
