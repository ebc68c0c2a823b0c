"""The benchmark runner: files written, resumable, sweeps reuse fits, errors for bad specs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import one_line
from PIL import Image

from imagic_kit.bench.report import write_report
from imagic_kit.bench.runner import (
    load_strip,
    parse_methods,
    read_results,
    recipe_id,
    run_benchmark,
)
from imagic_kit.bench.suites import load_suite, make_suite
from imagic_kit.cli import main
from imagic_kit.config import parse_sweep
from imagic_kit.errors import (
    ConfigError,
    InputImageError,
)
from imagic_kit.registry import make_config


def test_runner_writes_rows_reports_and_resumes(tiny, tmp_path):
    suite = make_suite("quick", seed=1)
    methods = parse_methods("sdedit,ddim@fast")
    kw = dict(
        sweep=parse_sweep(["guidance_scale=2,4"]),
        overrides={"num_inference_steps": "4"},
        progress=False,
        limit=2,
    )
    rows = run_benchmark(tiny, suite, methods, tmp_path, **kw)
    assert len(rows) == 2 * 2 * 2  # methods x sweep values x edits
    ddim = [r for r in rows if r["label"] == "ddim@fast"]
    assert sorted(r["fit_reused"] for r in ddim) == [
        "False",
        "False",
        "True",
        "True",
    ]  # sample-stage sweep reuses
    assert all((tmp_path / r["image"]).is_file() for r in rows)
    again = run_benchmark(tiny, suite, methods, tmp_path, **kw)  # resumes: nothing new
    assert len(again) == len(rows) == len(read_results(tmp_path / "results.csv"))
    before = (tmp_path / "results.csv").read_bytes()
    changed = dict(kw, overrides={"num_inference_steps": "3"})  # another recipe, same labels
    with pytest.raises(ConfigError, match="another recipe.*new --out folder"):
        run_benchmark(tiny, suite, methods, tmp_path, **changed)
    with pytest.raises(ConfigError, match="another recipe"):
        run_benchmark(tiny, suite, methods, tmp_path, seed=1, **kw)
    assert (tmp_path / "results.csv").read_bytes() == before  # nothing written, nothing lost
    paths = write_report(again, suite, tmp_path, "test")
    text = paths["summary"].read_text()
    assert "| sdedit |" in text and "| ddim@fast |" in text
    assert (tmp_path / "index.html").read_text().count("<tr>") == 1 + len(suite["edits"])


def test_bad_specs_are_rejected(tiny, tmp_path):
    with pytest.raises(ConfigError, match="unknown method"):
        parse_methods("sdedit,nope")
    with pytest.raises(ConfigError, match="unknown preset"):
        parse_methods("sdedit@nope")
    with pytest.raises(ConfigError, match="key=v1,v2"):
        parse_sweep(["guidance_scale"])
    with pytest.raises(ConfigError, match="belong to none"):
        run_benchmark(
            tiny,
            make_suite("quick"),
            parse_methods("sdedit"),
            tmp_path,
            sweep={"rank": ["1"]},
            progress=False,
        )
    with pytest.raises(ConfigError, match="--set key.*strenght belong to none"):
        run_benchmark(
            tiny,
            make_suite("quick"),
            parse_methods("sdedit,ddim"),
            tmp_path,
            overrides={"strenght": "0.5"},
            progress=False,
        )
    assert not (tmp_path / "results.csv").exists()


def test_set_applies_to_the_methods_that_have_the_field(tiny, tmp_path):
    """ddim samples deterministically and has no candidates field: --set candidates=2 reaches sdedit
    only, and ddim runs as it would without it."""
    rows = run_benchmark(
        tiny,
        make_suite("quick", seed=1),
        parse_methods("sdedit,ddim@fast"),
        tmp_path,
        overrides={"candidates": "2", "num_inference_steps": "3"},
        progress=False,
        limit=1,
    )
    assert {r["label"] for r in rows} == {"sdedit", "ddim@fast"}
    edit0 = make_suite("quick", seed=1)["edits"][0]
    want = make_config("sdedit", candidates=2, num_inference_steps=3)
    sdedit = next(r for r in rows if r["label"] == "sdedit")
    assert sdedit["recipe"] == recipe_id(tiny.model_id, want, 0, edit0)  # it reached sdedit
    plain = run_benchmark(
        tiny,
        make_suite("quick", seed=1),
        parse_methods("ddim@fast"),
        tmp_path / "plain",
        overrides={"num_inference_steps": "3"},
        progress=False,
        limit=1,
    )
    ddim = next(r for r in rows if r["label"] == "ddim@fast")
    assert ddim["recipe"] == plain[0]["recipe"]
    a = np.asarray(Image.open(tmp_path / ddim["image"]))
    assert np.array_equal(a, np.asarray(Image.open(tmp_path / "plain" / plain[0]["image"])))


def test_bench_cli(capsys, tmp_path):
    code = main(
        [
            "bench",
            "--suite",
            "quick",
            "--methods",
            "sdedit",
            "--model",
            "tiny-random",
            "--out",
            str(tmp_path),
            "--limit",
            "1",
            "--set",
            "num_inference_steps=3",
            "-q",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "| sdedit |" in out and (tmp_path / "summary.md").is_file()


def test_shards_split_a_suite_into_one_results_file(tiny, tmp_path):
    suite = make_suite("quick", seed=1)
    kw = dict(overrides={"num_inference_steps": "2"}, progress=False, limit=3)
    methods = parse_methods("sdedit")
    run_benchmark(tiny, suite, methods, tmp_path, shard=(1, 2), **kw)
    assert [r["edit_id"] for r in read_results(tmp_path / "results.csv")] == [
        suite["edits"][1]["id"]
    ]
    rows = run_benchmark(tiny, suite, methods, tmp_path, shard=(0, 2), **kw)
    assert sorted(r["edit_id"] for r in rows) == sorted(e["id"] for e in suite["edits"][:3])
    with pytest.raises(ConfigError, match="shard 2/2 is impossible"):
        run_benchmark(tiny, suite, methods, tmp_path, shard=(2, 2), **kw)


def test_two_key_sweep_plots_one_line_per_value_of_the_other_key():
    from imagic_kit.bench.report import sweep_series

    def s(eta, de, label="imagic"):
        return {"label": label, "sweep": f'{{"ddim_eta": {de}, "eta": {eta}}}', "success": 0.5}

    summary = [s(1.0, 0.5), s(0.8, 0.5), s(0.8, 1.0), s(1.0, 1.0), s(0.8, 0.5, "other")]
    series = sweep_series(summary)
    assert sorted(series) == ["ddim_eta", "eta"]
    eta_lines = series["eta"]
    assert sorted(eta_lines) == ["imagic ddim_eta=0.5", "imagic ddim_eta=1.0", "other ddim_eta=0.5"]
    assert [x for x, _ in eta_lines["imagic ddim_eta=0.5"]] == [0.8, 1.0]  # sorted by eta
    assert {p["sweep"] for _, p in eta_lines["imagic ddim_eta=1.0"]} == {
        '{"ddim_eta": 1.0, "eta": 0.8}',
        '{"ddim_eta": 1.0, "eta": 1.0}',
    }
    assert sorted(series["ddim_eta"]) == ["imagic eta=0.8", "imagic eta=1.0", "other eta=0.8"]


def test_results_of_another_version_are_not_resumed(tiny, tmp_path):
    (tmp_path / "results.csv").write_text(
        "label,method,sweep,edit_id\nsdedit,sdedit,{},colour-00\n"
    )
    with pytest.raises(ConfigError, match="another version of imagic-kit"):
        run_benchmark(
            tiny, make_suite("quick"), parse_methods("sdedit"), tmp_path, progress=False, limit=1
        )


def test_judge_candidates_records_every_candidate_and_the_pick(tiny, tmp_path, capsys):
    """--judge-candidates: one candidates.csv row per candidate with the oracle's verdict and the
    ranking's measures; the rank-0 row is the edit results.csv scored; a resumed run adds
    nothing; the report gives the pick and oracle rates; scripts/rerank.py re-ranks the same
    candidates offline and reproduces the bench's picks."""
    import csv
    import importlib.util
    from pathlib import Path

    from imagic_kit.ranking import score_candidates

    suite = make_suite("quick", seed=1)
    kw = dict(
        # restored candidates: the strip holds what edit returns, the pick among them
        overrides={"num_inference_steps": "4", "candidates": "3", "restore_unedited": "0.5"},
        progress=False,
        limit=2,
        judge_candidates=True,
    )
    rows = run_benchmark(tiny, suite, parse_methods("sdedit"), tmp_path, **kw)
    run_benchmark(tiny, suite, parse_methods("sdedit"), tmp_path, **kw)  # resumed: nothing new
    with (tmp_path / "candidates.csv").open(newline="") as f:
        cands = list(csv.DictReader(f))
    assert len(cands) == 2 * 3
    for r in rows:
        mine = [c for c in cands if c["edit_id"] == r["edit_id"]]
        assert sorted(int(c["rank"]) for c in mine) == [0, 1, 2]
        assert sorted(int(c["index"]) for c in mine) == [0, 1, 2]
        pick = next(c for c in mine if c["rank"] == "0")
        assert pick["success"] == r["success"]
        assert pick["background_psnr"] == r["background_psnr"]
        assert all(c["rank_clip"] == "" and float(c["rank_fidelity"]) > 0 for c in mine)
        # tiny-random has no CLIP: sdedit's clip+structure ranked by structure; the recorded
        # measures (unrounded) give back the bench's order exactly
        assert {(c["rank_by"], c["structure_weight"]) for c in mine} == {("structure", "0.5")}
        mine.sort(key=lambda c: int(c["index"]))
        order, score = score_candidates(
            None,
            [float(c["rank_structure"]) for c in mine],
            [float(c["rank_fidelity"]) for c in mine],
            rank_by="structure",
        )
        assert [int(mine[i]["rank"]) for i in order] == [0, 1, 2]
        assert score == [float(c["rank_score"]) for c in mine]
        # every candidate's image, lossless, in drawing order: the pick is the saved output
        strip = tmp_path / Path(r["image"]).parent / "candidates" / Path(r["image"]).name
        ims = load_strip(strip)  # 3 square images: n from the width
        assert [im.size for im in ims] == [(64, 64)] * 3
        best = ims[order[0]]
        assert np.array_equal(np.asarray(best), np.asarray(Image.open(tmp_path / r["image"])))
        with pytest.raises(ValueError, match="does not hold 5 images"):
            load_strip(strip, 5)
    text = write_report(rows, suite, tmp_path, "test")["summary"].read_text()
    rate = f"{100 * sum(r['success'] == 'True' for r in rows) / 2:.0f}%"
    assert f"| sdedit | default | 2 / 2 | {rate} |" in text  # the best-of-N section's pick rate

    path = Path(__file__).resolve().parents[2] / "scripts" / "rerank.py"
    spec = importlib.util.spec_from_file_location("rerank", path)
    rerank = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rerank)
    capsys.readouterr()
    assert rerank.main([str(tmp_path)]) == 0  # the default rankings: clip dropped without CLIP
    out = capsys.readouterr().out
    recorded = next(x for x in out.splitlines() if x.startswith("| as recorded"))
    again = next(x for x in out.splitlines() if x.startswith("| clip+structure sw=0.5 "))
    assert recorded.split("|")[2:] == again.split("|")[2:], out
    assert "| clip+structure+fidelity sw=0.5 fw=0.25 |" in out
    assert rerank.main([str(tmp_path), "--rank-by", "clip", "--by-kind"]) == 0
    out = capsys.readouterr().out
    assert "| clip | 0/" in out and "oracle (some candidate succeeds)" in out


def _start_after(barrier, path, fields):
    from imagic_kit.bench.store import start_csv as _start_csv

    barrier.wait()
    _start_csv(path, fields)


def test_shards_starting_together_write_one_header(tmp_path):
    """``--shard I/N`` processes started at once on one --out: exactly one header row."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    fields = ["label", "edit_id", "success"]
    for k in range(60):  # the unlocked start wrote two headers in about 1 of 8 such starts
        path = tmp_path / f"results-{k}.csv"
        barrier = ctx.Barrier(4)
        procs = [ctx.Process(target=_start_after, args=(barrier, path, fields)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
            if p.is_alive():  # hung (a deadlock): fail, leaving nothing behind
                p.kill()
                p.join()
        assert [p.exitcode for p in procs] == [0] * 4
        assert path.read_text().splitlines() == [",".join(fields)], path.read_text()


def test_a_repeated_header_row_is_not_read_as_a_result(tmp_path):
    """A results file from shards of an earlier version that each wrote the header: the second
    header is no row (it showed up in summaries as a method called "label")."""
    from imagic_kit.bench.store import FIELDS
    from imagic_kit.bench.store import start_csv as _start_csv

    path = tmp_path / "results.csv"
    _start_csv(path, FIELDS)
    row = dict.fromkeys(FIELDS, "x")
    with path.open("a") as f:
        f.write(",".join(FIELDS) + "\n" + ",".join(row[k] for k in FIELDS) + "\n")
    assert read_results(path) == [row]


@pytest.mark.parametrize(
    "bad_id", ["../escape", "a/b", "..", ".hidden", "", "x" * 101, "-rf", "a b"]
)
def test_suite_ids_cannot_leave_the_output_folder(tmp_path, bad_id):
    suite = make_suite("quick", seed=0)
    suite["edits"] = suite["edits"][:2]
    suite["edits"][0]["id"] = bad_id
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(suite))
    with pytest.raises(ConfigError, match="cannot name a file"):
        load_suite(path)


def test_duplicate_ids_and_bad_entries_are_refused_before_anything_runs(tiny, tmp_path):
    suite = make_suite("quick", seed=0)
    suite["edits"] = suite["edits"][:3]
    suite["edits"][1]["id"] = suite["edits"][0]["id"]
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(suite))
    with pytest.raises(ConfigError, match="used twice"):
        load_suite(path)
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="twice"):  # a suite given as a dict is checked too
        run_benchmark(tiny, suite, [("sdedit", None)], out, progress=False)
    suite = make_suite("quick", seed=0)
    suite["edits"] = suite["edits"][:1]
    suite["edits"][0]["id"] = "../../evil"
    with pytest.raises(ConfigError, match="cannot name a file"):
        run_benchmark(tiny, suite, [("sdedit", None)], out, progress=False)
    assert not out.exists() and not (tmp_path.parent / "evil.png").exists()
    for change, match in (
        ({"target": {"shape": "hexagon", "colour": "red", "background": "gray"}}, "hexagon"),
        ({"changes": ["mood"]}, "changes"),
        ({"prompt": "  "}, "prompt must be non-empty"),
        ({"changes": [["colour"]]}, "changes"),
        ({"source_prompt": 5}, "source_prompt must be text"),
        ({"id": None}, "the id must be a name"),
        ({"scene": {**suite_scene(), "side": float("nan")}}, "whole numbers"),
        ({"scene": {**suite_scene(), "x0": -1000}}, "inside the 64x64 canvas"),
        ({"scene": {**suite_scene(), "side": 10**12}}, "inside the 64x64 canvas"),
    ):
        suite = make_suite("quick", seed=0)
        suite["edits"] = suite["edits"][:1]
        suite["edits"][0].update(change)
        path.write_text(json.dumps(suite))
        with pytest.raises(ConfigError, match=match):
            load_suite(path)


def test_suite_images_go_through_the_safe_loader(tmp_path):
    suite = make_suite("quick", seed=0)
    suite["edits"] = suite["edits"][:1]
    del suite["edits"][0]["scene"]
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    suite["edits"][0]["image"] = "broken.png"  # relative to the suite file
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(suite))
    with pytest.raises(InputImageError, match="broken.png"):
        load_suite(path)
    (tmp_path / "folder.png").mkdir()
    suite["edits"][0]["image"] = "folder.png"
    path.write_text(json.dumps(suite))
    with pytest.raises(InputImageError, match="is a folder"):
        load_suite(path)


def test_bench_refuses_before_the_model_loads(capsys, tmp_path, no_model):
    base = ["bench", "--suite", "quick", "--methods", "sdedit", "--out", str(tmp_path / "b")]
    one_line(capsys, [*base, "--limit", "0"], "--limit 0")
    one_line(capsys, [*base, "--shard", "2/2"], "shard 2/2")
    one_line(capsys, [*base, "--threads", "0"], "--threads 0")
    one_line(capsys, [*base, "--set", "strength=nan"], "finite number")
    one_line(capsys, [*base, "--sweep", "strength=0.5,7"], "out of range")
    one_line(capsys, [*base, "--set", "strenght=0.5"], "belong to none")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line(capsys, [*base[:-1], str(blocker)], "is a file")
    assert not (tmp_path / "b").exists()


def test_a_partial_last_row_is_dropped_and_redone(tiny, tmp_path, capsys):
    suite = make_suite("quick", seed=1)
    kw = dict(overrides={"num_inference_steps": "3"}, progress=False, limit=3)
    whole = run_benchmark(tiny, suite, [("sdedit", None)], tmp_path / "whole", **kw)
    out = tmp_path / "cut"
    run_benchmark(tiny, suite, [("sdedit", None)], out, **{**kw, "limit": 2})
    results = out / "results.csv"
    text = results.read_text()
    last = text.splitlines()[-1]
    results.write_text(text[: len(text) - len(last) // 2 - 1])  # power lost mid-row
    assert len(read_results(results)) == 1  # the cut row is not counted
    rows = run_benchmark(tiny, suite, [("sdedit", None)], out, **kw)
    assert "partial row" in capsys.readouterr().err
    drop = {"fit_s", "sample_s", "peak_mem_mb"}
    key = lambda r: r["edit_id"]  # noqa: E731
    strip = lambda rs: sorted(({k: v for k, v in r.items() if k not in drop} for r in rs), key=key)  # noqa: E731
    assert strip(rows) == strip(whole)
    assert results.read_text().endswith("\n") and len(results.read_text().splitlines()) == 4


def test_results_files_that_are_empty_or_not_files(tiny, tmp_path):
    suite = make_suite("quick", seed=1)
    kw = dict(overrides={"num_inference_steps": "2"}, progress=False, limit=2)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "results.csv").write_text("")  # a crash before the header reached the disk
    rows = run_benchmark(tiny, suite, [("sdedit", None)], empty, **kw)
    assert len(rows) == 2 and read_results(empty / "results.csv") == rows
    odd = tmp_path / "odd"
    (odd / "results.csv").mkdir(parents=True)
    with pytest.raises(ConfigError, match="is not a file"):
        run_benchmark(tiny, suite, [("sdedit", None)], odd, **kw)
    # only the last newline lost: the row is dropped and redone, not counted
    text = (empty / "results.csv").read_text()
    (empty / "results.csv").write_text(text[:-1])
    again = run_benchmark(tiny, suite, [("sdedit", None)], empty, **kw)
    assert len(again) == 2 and (empty / "results.csv").read_text().endswith("\n")


def suite_scene():
    return dict(make_suite("quick", seed=0)["edits"][0]["scene"])
