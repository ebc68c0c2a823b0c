"""Reports from ``results.csv``: summary.md, plots and an index.html image grid."""

from __future__ import annotations

import html
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from .store import read_results
from .suites import KINDS


def _b(v: Any) -> bool | None:
    if v in ("", None, "None"):
        return None
    return str(v) == "True"


def _f(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if x == x else None  # drop NaN


def _rate(vals: list[bool | None]) -> float | None:
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else None


def summarise(rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    """One dict per (label, sweep) group: rates, means, medians."""
    groups: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        groups[(r["label"], r["sweep"])].append(r)
    out = []
    for (label, sweep), rs in groups.items():
        clip = [x for x in (_f(r["clip_score"]) for r in rs) if x is not None]
        # reused fits carry the time of the fit they reuse: the fit cost per edit either way
        fit = [x for x in (_f(r["fit_s"]) for r in rs) if x is not None]
        sample = [x for x in (_f(r["sample_s"]) for r in rs) if x is not None]
        s = {
            "label": label,
            "sweep": sweep,
            "n": len(rs),
            "success": _rate([_b(r["success"]) for r in rs]),
            "target": _rate([_b(r["target_ok"]) for r in rs]),
            "position": _rate([_b(r["position_ok"]) for r in rs]),
            "size": _rate([_b(r["size_ok"]) for r in rs]),
            "clean": _rate([_b(r.get("clean", "")) for r in rs]),
            "background_kept": _rate([_b(r["background_kept"]) for r in rs]),
            "leakage": _rate([_b(r["leakage"]) for r in rs]),
            "clip": statistics.mean(clip) if clip else None,
            "bg_psnr": statistics.mean(
                [
                    x
                    for x in (
                        _f(r["background_psnr"]) for r in rs if _b(r["background_kept"]) is not None
                    )
                    if x is not None
                ]
                or [float("nan")]
            ),
            "psnr": _median([_f(r.get("psnr", "")) for r in rs]),
            "vae_psnr": _median([_f(r.get("vae_psnr", "")) for r in rs]),
            "fit_s": statistics.median(fit) if fit else 0.0,
            "sample_s": statistics.median(sample) if sample else None,
            "peak_mem_mb": max((_f(r["peak_mem_mb"]) or 0.0) for r in rs),
            "device": rs[0]["device"],
        }
        for k in KINDS:
            s[f"success_{k}"] = _rate([_b(r["success"]) for r in rs if r["kind"] == k])
        out.append(s)
    return out


def _median(vals: list[float | None]) -> float | None:
    vals = [v for v in vals if v is not None and v == v]
    return statistics.median(vals) if vals else None


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.0f}%"


def _num(v: float | None, fmt: str = "{:.2f}") -> str:
    return "–" if v is None or v != v else fmt.format(v)


def summary_markdown(summary: list[dict[str, Any]], title: str = "Benchmark") -> str:
    lines = [
        f"# {title}",
        "",
        "| method | setting | n | success | target attrs | position | size | clean | background kept | leakage | CLIP | "
        "bg PSNR dB | PSNR / VAE dB (median) | fit s (median) | sample s (median) | peak MB | device |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        setting = "default" if s["sweep"] in ("{}", "") else s["sweep"]
        lines.append(
            f"| {s['label']} | {setting} | {s['n']} | **{_pct(s['success'])}** | {_pct(s['target'])} | {_pct(s['position'])} | "
            f"{_pct(s['size'])} | {_pct(s['clean'])} | {_pct(s['background_kept'])} | {_pct(s['leakage'])} | {_num(s['clip'], '{:.3f}')} | "
            f"{_num(s['bg_psnr'], '{:.1f}')} | {_num(s['psnr'], '{:.1f}')} / {_num(s['vae_psnr'], '{:.1f}')} | {_num(s['fit_s'])} | {_num(s['sample_s'])} | {_num(s['peak_mem_mb'], '{:.0f}')} | {s['device']} |"
        )
    lines += [
        "",
        "Success by edit kind:",
        "",
        "| method | setting | " + " | ".join(KINDS) + " |",
        "|---|---|" + "---|" * len(KINDS),
    ]
    for s in summary:
        setting = "default" if s["sweep"] in ("{}", "") else s["sweep"]
        lines.append(
            f"| {s['label']} | {setting} | "
            + " | ".join(_pct(s[f"success_{k}"]) for k in KINDS)
            + " |"
        )
    lines += [
        "",
        "Success: the oracle reads the target shape, colour and background; the bounding-box centre moved "
        "<= 5 px; its side changed <= 25%; for edits that keep the background, PSNR >= 25 dB outside both "
        "objects' masks dilated by 3 px; the object drawn clean (flat, in its palette colour, "
        "no rim or fringe: Clean, of the edits with an object). Leakage: a source attribute the edit changes is still there. "
        "Peak MB: the highest per-edit peak; process RSS sampled every 10 ms on CPU (includes the loaded model), max allocated on CUDA.",
        "",
    ]
    return "\n".join(lines)


def sweep_series(
    summary: list[dict[str, Any]],
) -> dict[str, dict[str, list[tuple[float, dict[str, Any]]]]]:
    """For each numerically swept key: the lines to draw against it, ``{key: {line: [(x, s)]}}``
    sorted by x. A line is one method label and one value of every other swept key (a 2-D sweep
    of eta x ddim_eta gives one eta line per ddim_eta), so points of different settings are never
    joined."""
    swept: dict[str, dict[str, list[tuple[float, dict[str, Any]]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for s in summary:
        setting = json.loads(s["sweep"] or "{}")
        for k, v in setting.items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                rest = " ".join(f"{k2}={v2}" for k2, v2 in sorted(setting.items()) if k2 != k)
                line = f"{s['label']} {rest}".strip()
                swept[k][line].append((float(v), s))
    for lines in swept.values():
        for pts in lines.values():
            pts.sort(key=lambda p: p[0])
    return {k: dict(v) for k, v in swept.items()}


def write_plots(summary: list[dict[str, Any]], out: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    paths = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for s in summary:
        t = (s["fit_s"] or 0) + (s["sample_s"] or 0)
        ax.scatter(t, 100 * (s["success"] or 0))
        name = s["label"] if s["sweep"] in ("{}", "") else f"{s['label']} {s['sweep']}"
        ax.annotate(name, (t, 100 * (s["success"] or 0)), fontsize=7)
    ax.set_xlabel("median fit + sample time per edit (s)")
    ax.set_ylabel("success (%)")
    ax.set_ylim(-5, 105)
    ax.set_title("success vs time")
    fig.tight_layout()
    fig.savefig(out / "success_vs_time.png", dpi=120)
    plt.close(fig)
    paths.append(out / "success_vs_time.png")
    # one plot per swept key: success and background fidelity against its value, one line per
    # method and value of the other swept keys
    swept = sweep_series(summary)
    for key, by_label in swept.items():
        fig, ax1 = plt.subplots(figsize=(6, 4))
        ax2 = ax1.twinx()
        for i, (label, pts) in enumerate(by_label.items()):
            xs, c = [p[0] for p in pts], f"C{i % 10}"
            succ = [100 * (p[1]["success"] or 0) for p in pts]
            ax1.plot(xs, succ, "o-", color=c, label=f"{label} success")
            ax2.plot(
                xs,
                [p[1]["bg_psnr"] for p in pts],
                "s--",
                color=c,
                alpha=0.6,
                label=f"{label} bg PSNR",
            )
        ax1.set_xlabel(key)
        ax1.set_ylabel("success (%)")
        ax2.set_ylabel("background PSNR (dB), fidelity")
        ax1.legend(loc="upper left", fontsize=7)
        ax2.legend(loc="lower right", fontsize=7)
        ax1.set_title(f"success and fidelity vs {key}")
        fig.tight_layout()
        p = out / f"sweep_{key}.png"
        fig.savefig(p, dpi=120)
        plt.close(fig)
        paths.append(p)
    return paths


def index_html(rows: list[dict[str, str]], suite: dict[str, Any], out: Path) -> Path:
    settings = sorted({(r["label"], r["sweep"]) for r in rows})
    by = {(r["label"], r["sweep"], r["edit_id"]): r for r in rows}
    head = "".join(
        f"<th>{html.escape(lab)}<br><small>{html.escape('' if sw in ('{}', '') else sw)}</small></th>"
        for lab, sw in settings
    )
    body = []
    for e in suite["edits"]:
        cells = [
            f"<td><img src='images/inputs/{e['id']}.png'><br><small>{html.escape(e.get('source_prompt', ''))}</small></td>"
        ]
        for lab, sw in settings:
            r = by.get((lab, sw, e["id"]))
            if r is None:
                cells.append("<td>–</td>")
                continue
            ok = r["success"] == "True"
            mark = (
                "<b style='color:#080'>&#10003; pass</b>"
                if ok
                else "<b style='color:#c00'>&#10007; fail</b>"
            )
            why = [
                k.replace("_ok", "")
                for k in ("shape_ok", "colour_ok", "background_ok", "position_ok", "size_ok")
                if r[k] == "False"
            ]
            if r["background_kept"] == "False":
                why.append("bg changed")
            if r.get("clean") == "False":
                why.append("not clean")
            cells.append(
                f"<td><img src='{html.escape(r['image'])}'><br>{mark}<br><small>{html.escape(', '.join(why))}</small></td>"
            )
        body.append(
            f"<tr><td><b>{e['id']}</b><br><small>{html.escape(e['prompt'])}</small></td>{''.join(cells)}</tr>"
        )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>imagic-kit benchmark</title>
<style>body{{font-family:sans-serif}} td,th{{padding:4px;text-align:center;vertical-align:top;border-bottom:1px solid #ddd}}
img{{width:128px;height:128px;image-rendering:pixelated}}</style></head><body>
<h1>imagic-kit benchmark: {html.escape(str(suite.get("name", "")))}</h1>
<table><tr><th>edit / target</th><th>input</th>{head}</tr>{"".join(body)}</table></body></html>"""
    path = out / "index.html"
    path.write_text(page)
    return path


def judged_edits(
    cands: list[dict[str, str]], rows: list[dict[str, str]] | None = None
) -> dict[tuple[str, str], dict[str, list[dict[str, str]]]]:
    """``candidates.csv`` rows grouped: {(label, sweep): {edit_id: candidates in drawing order}}.

    A candidate written twice (a rerun after an interruption) counts once, the last copy; with
    ``rows`` (results.csv), only the candidates of the edits and recipes there are kept."""
    done = (
        None
        if rows is None
        else {(r["label"], r["sweep"], r["edit_id"], r["recipe"]) for r in rows}
    )
    last: dict[tuple[str, ...], dict[str, str]] = {}
    for c in cands:
        key = (c["label"], c["sweep"], c["edit_id"], c["recipe"])
        if done is None or key in done:
            last[(*key, c["index"])] = c
    groups: dict[tuple[str, str], dict[str, list[dict[str, str]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for c in last.values():
        groups[(c["label"], c["sweep"])][c["edit_id"]].append(c)
    for edits in groups.values():
        for cs in edits.values():
            cs.sort(key=lambda c: int(c["index"]))
    return groups


def candidates_markdown(cands: list[dict[str, str]], rows: list[dict[str, str]]) -> str:
    """The best-of-N section of summary.md, from ``candidates.csv`` (``--judge-candidates``): per
    setting, how often the pick succeeds against how often some candidate does (a perfect ranking)."""
    groups = judged_edits(cands, rows)
    lines = [
        "",
        "Best of N, every candidate judged by the oracle (`--judge-candidates`, candidates.csv; "
        "edits: judged / benchmarked):",
        "",
        "| method | setting | edits | pick succeeds | some candidate succeeds | candidates that succeed |",
        "|---|---|---|---|---|---|",
    ]
    for (label, sweep), edits in groups.items():
        n_rows = sum(r["label"] == label and r["sweep"] == sweep for r in rows)
        picked = [any(_b(c["success"]) and c["rank"] == "0" for c in cs) for cs in edits.values()]
        some = [any(_b(c["success"]) for c in cs) for cs in edits.values()]
        each = [_b(c["success"]) for cs in edits.values() for c in cs]
        setting = "default" if sweep in ("{}", "") else sweep
        lines.append(
            f"| {label} | {setting} | {len(edits)} / {n_rows} | {_pct(_rate(picked))} | "
            f"{_pct(_rate(some))} | {_pct(_rate(each))} |"
        )
    return "\n".join(lines) + "\n"


def write_report(
    rows: list[dict[str, str]], suite: dict[str, Any], out: str | Path, title: str
) -> dict[str, Path]:
    out = Path(out)
    summary = summarise(rows)
    text = summary_markdown(summary, title)
    if (out / "candidates.csv").is_file():
        cands = read_results(out / "candidates.csv")  # cut rows and repeated headers left out
        if cands:
            text += candidates_markdown(cands, rows)
    (out / "summary.md").write_text(text)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    plots = write_plots(summary, out)
    return {
        "summary": out / "summary.md",
        "index": index_html(rows, suite, out),
        **{p.stem: p for p in plots},
    }
