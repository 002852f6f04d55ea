"""report.html: the run report (jobs/reporting/report.py's data) as one self-contained page. Plots are
matplotlib PNGs embedded as base64; no script, no external file, so the page opens anywhere
(a browser, a mail attachment, an object-store console).

Read top to bottom: the headline numbers as tiles, quality against gold, what the task produced,
how it changed in an incremental run, where the time went, where the work ran, and the errors.
A job with several tasks: after the tiles, the tasks side by side (their inference time, rows,
placement, a shared tokenization), then a section per task (its quality, outputs and change).
Anything the run did not record reads "not recorded"."""
from __future__ import annotations

import base64
import html

NOT_RECORDED = '<p class="muted">not recorded</p>'

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
 margin:0;background:#f4f6fa;color:#1d2433}
header{background:#1d2433;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:20px;font-weight:600}
header .sub{color:#c3cad8;margin-top:4px}
.badge{display:inline-block;padding:1px 8px;border-radius:9px;font-size:12px;margin-left:8px;
 font-weight:600;vertical-align:middle}
.badge.complete{background:#1f9d55}.badge.running,.badge.other{background:#d68a00}
main{padding:8px 32px 32px;max-width:1240px}
h2{font-size:16px;margin:26px 0 10px;color:#1d2433;border-bottom:2px solid #e1e6ef;
 padding-bottom:4px}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(118px,1fr));gap:10px}
.tile{background:#fff;border-radius:8px;padding:9px 14px;min-width:96px;
 box-shadow:0 1px 2px rgba(0,0,0,.07)}
.tile .v{font-size:22px;font-weight:650;font-variant-numeric:tabular-nums}
.tile .k{color:#5d6779;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.tile .s{color:#5d6779;font-size:12px}
.tile.bad .v{color:#d64545}.tile.good .v{color:#1f9d55}.tile.big .v{font-size:32px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(540px,1fr));gap:14px}
.card{background:#fff;border-radius:8px;padding:12px 14px;box-shadow:0 1px 2px rgba(0,0,0,.07)}
.card h3{margin:0 0 6px;font-size:14px;font-weight:600}
.card img{max-width:100%;display:block}
table{border-collapse:collapse;background:#fff;font-variant-numeric:tabular-nums}
th,td{padding:5px 10px;border-bottom:1px solid #edf0f5;text-align:left;vertical-align:top}
th{font-size:12px;color:#5d6779;text-transform:uppercase;letter-spacing:.03em}
td.n{text-align:right}
.bar{display:inline-block;height:9px;background:#3563e9;border-radius:2px;vertical-align:middle;
 margin-right:6px}
.muted{color:#7b8496}
code{background:#eef1f6;padding:1px 5px;border-radius:4px;font-size:12.5px}
.err td.msg{max-width:560px;word-break:break-word}
footer{color:#7b8496;font-size:12px;margin-top:28px}
"""


def render_html(report: dict) -> str:
    job = report["job"]
    status = job.get("status") or "unknown"
    badge = "complete" if status == "complete" else ("running" if status == "running" else "other")
    if report.get("tasks") is not None:  # a job with several tasks
        metrics = (report.get("metrics") or {}).get("tasks") or {}
        sections = [_tiles(report), _tasks_section(report)]
        sections += [_task_section(task, metrics.get(task["name"])) for task in report["tasks"]]
        sections += [_time_section(report.get("time")), _resources_section(report),
                     _errors_section(report.get("errors") or [], report["rows"])]
        what = f'{len(report["tasks"])} tasks'
        title = f'{what}: {", ".join(t["name"] for t in report["tasks"])}'
        heading = (f'{_e(what)} <span class="muted">·</span>\n'
                   f'{_e(", ".join(t["name"] for t in report["tasks"]))}')
    else:
        sections = [
            _tiles(report),
            _metrics_section(report.get("metrics")),
            _outputs_section(report.get("outputs") or []),
            _drift_section(report.get("drift")),
            _time_section(report.get("time")),
            _resources_section(report),
            _errors_section(report.get("errors") or [], report["rows"]),
        ]
        title = job.get("task")
        heading = (f'{_e(job.get("task") or "job")} <span class="muted">·</span>\n'
                   f'{_e(_short_model(job.get("model")))}')
    problem = (f'<p class="muted">The job spec in the manifest did not validate '
               f'({_e(job["spec_problem"])}): metrics and option-dependent views are left '
               f'out.</p>' if job.get("spec_problem") else "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>corpusmill report: {_e(title)} job {_e(job.get("job_id"))}</title>
<style>{CSS}</style></head>
<body><header><h1>{heading}<span class="badge {badge}">{_e(status)}</span></h1>
<div class="sub">job {_e(job.get("job_id"))} · run {_e(job.get("run_id"))} ·
{_e(job.get("created") or "")} · output {_e(job.get("output"))}</div></header>
<main>{problem}{"".join(sections)}
<footer>corpusmill {_e(job.get("corpusmill_version") or "")} · rebuild with
<code>corpusmill report {_e(job.get("output"))}</code> · data: <code>.corpusmill/report/report.json</code>
</footer></main></body></html>
"""


# ---------------------------------------------------------------- pieces

def _e(value) -> str:
    return html.escape("" if value is None else str(value))


def _short_model(model) -> str:
    text = str(model or "")
    return text if len(text) <= 60 else "…" + text[-57:]


def _n(value, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and digits:
        return f"{value:,.{digits}f}"
    return f"{value:,.0f}" if isinstance(value, (int, float)) else _e(value)


def _duration(seconds) -> str:
    if seconds is None:
        return "–"
    seconds = float(seconds)
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _tile(key: str, value: str, sub: str = "", cls: str = "") -> str:
    return (f'<div class="tile {cls}"><div class="k">{_e(key)}</div><div class="v">{value}</div>'
            + (f'<div class="s">{sub}</div>' if sub else "") + "</div>")


def _tiles(report: dict) -> str:
    rows, time, tokens = report["rows"], report.get("time") or {}, report.get("tokens") or {}
    errored = rows.get("errored") or 0
    tiles = [
        _tile("rows in", _n(rows.get("in")), f'{_n(rows.get("files_in"))} file(s)'),
        _tile("rows out", _n(rows.get("out"))),
        _tile("with errors", _n(errored), _pct(errored, rows.get("out")),
              "bad" if errored else "good"),
        _tile("skipped", _n(rows.get("skipped")), cls="bad" if rows.get("skipped") else ""),
        _tile("truncated", _n(rows.get("truncated")), "cut to the window"),
        _tile("resumed", _n(rows.get("resumed")), "done before"),
        _tile("wall time", _duration(time.get("wall_seconds")),
              (f'first rows written at {_duration(time["seconds_to_first_output"])}'
               if time.get("seconds_to_first_output") is not None else "")),
        _tile("rows / s", _n(time.get("rows_per_second"), 1)),
        _tile("padding efficiency", _pct_value(tokens.get("padding_efficiency")),
              "real / computed tokens" if tokens else "not recorded"),
    ]
    if rows.get("incremental"):
        tiles.insert(1, _tile("incremental", _n(rows.get("files_in")) + " new",
                              f'{_n(rows.get("files_done_before"))} file(s) done before'))
    corrupt = rows.get("corrupt_files_skipped") or []
    if corrupt:
        tiles.append(_tile("corrupt files", _n(len(corrupt)), _e(", ".join(corrupt[:3])), "bad"))
    return f'<h2>At a glance</h2><div class="tiles">{"".join(tiles)}</div>'


def _pct(part, whole) -> str:
    return f"{100 * part / whole:.1f}%" if whole else ""


def _pct_value(share) -> str:
    return "–" if share is None else f"{100 * share:.1f}%"


# ---------------------------------------------------------------- quality

_PERCENT_METRICS = {"accuracy", "macro_f1", "micro_f1", "precision", "recall", "f1",
                    "top1_accuracy", "top_k_accuracy", "rouge1", "rouge2", "rougeL"}
_SCALE_100 = {"exact_match", "bleu", "chrf"}
_SCALE_NOTES = {("question-answering", "exact_match"): "SQuAD v1.1, of 100",
                ("question-answering", "f1"): "SQuAD v1.1, of 100",
                ("translation", "bleu"): "sacreBLEU, of 100", ("translation", "chrf"): "of 100"}
_LABELS = {"accuracy": "accuracy", "macro_f1": "macro F1", "micro_f1": "micro F1",
           "precision": "precision", "recall": "recall", "f1": "F1", "exact_match": "exact match",
           "top1_accuracy": "top-1 accuracy", "top_k_accuracy": "top-k accuracy",
           "rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "bleu": "BLEU",
           "chrf": "chrF"}


def _metrics_section(result: dict | None) -> str:
    """Quality against gold; a task of a job with several (`result["name"]`) says its name."""
    if not result:
        return ""
    metrics, rows = result.get("metrics") or {}, result["rows"]
    tiles = []
    for key, value in metrics.items():
        if key in _PERCENT_METRICS:
            shown = f"{100 * value:.1f}%"
        elif key in _SCALE_100:
            shown = f"{value:.1f}"
        else:
            continue
        if result["task"] == "question-answering" and key == "f1":
            shown = f"{value:.1f}"
        label = _LABELS.get(key, key) + (f" (k={metrics['k']})" if key == "top_k_accuracy" else "")
        sub = (f"{round(value * rows['scored']):,} of {rows['scored']:,} right"
               if key == "accuracy" else _SCALE_NOTES.get((result["task"], key), ""))
        tiles.append(_tile(label, shown, sub, cls="big"))
    from corpusmill.jobs.reporting.evaluate import scored_rows

    left = [f'{_n(scored_rows(result))} row(s) scored']
    if rows.get("gold_missing"):
        left.append(f'{_n(rows["gold_missing"])} without gold left out')
    if rows.get("errored"):
        left.append(f'{_n(rows["errored"])} with errors left out')
    for key in ("rows_gold_mismatched", "gold_not_a_candidate"):
        if metrics.get(key):
            left.append(f"{_n(metrics[key])} {key.replace('_', ' ')}")
    named = f'<code>{_e(result["name"])}</code>: quality' if result.get("name") else "Quality"
    parts = [f'<h2>{named} against <code>{_e(result["gold"])}</code></h2>',
             f'<div class="tiles">{"".join(tiles) or "<p>no row to score</p>"}</div>',
             f'<p class="muted">{_e("; ".join(left))}'
             + (f' · {_e(metrics["bleu_signature"])}' if metrics.get("bleu_signature") else "")
             + "</p>"]
    per_class = metrics.get("per_class") or metrics.get("per_type")
    cards = []
    if per_class:
        cards.append(f'<div class="card"><h3>Per {"class" if "per_class" in metrics else "type"}'
                     f'</h3>{_per_class_table(per_class)}</div>')
    matrix = metrics.get("confusion_matrix")
    if matrix and matrix["labels"]:
        from corpusmill.jobs.reporting.report_plots import confusion_png

        cards.append(f'<div class="card"><h3>Confusion matrix (rows: gold, columns: predicted)'
                     f'</h3>{_img(confusion_png(matrix))}</div>')
    if cards:
        parts.append(f'<div class="grid">{"".join(cards)}</div>')
    return "".join(parts)


def _per_class_table(per_class: dict) -> str:
    body = []
    for label, v in per_class.items():  # in the confusion matrix's order
        f1 = v["f1"]
        body.append(f'<tr><td>{_e(label)}</td><td class="n">{v["precision"]:.2f}</td>'
                    f'<td class="n">{v["recall"]:.2f}</td><td><span class="bar" '
                    f'style="width:{80 * f1:.0f}px"></span>{f1:.2f}</td>'
                    f'<td class="n">{_n(v["support"])}</td></tr>')
    return ("<table><tr><th>label</th><th>precision</th><th>recall</th><th>F1</th>"
            f"<th>support</th></tr>{''.join(body)}</table>")


# ---------------------------------------------------------------- outputs

def _outputs_section(outputs: list[dict], name: str = "") -> str:
    """The task's output distributions; `name`: a task of a job with several."""
    from corpusmill.jobs.reporting.report_plots import counts_png, histogram_png

    heading = f"<h2><code>{_e(name)}</code>: outputs</h2>" if name else "<h2>Outputs</h2>"
    if not outputs:
        return f'{heading}<p class="muted">no successful row to summarise</p>'
    shares = [o for o in outputs if o["kind"] == "share"]
    cards = []
    for panel in outputs:
        if panel["kind"] == "counts" and panel.get("counts"):
            note = (f'{_n(panel["distinct"])} distinct; {_n(panel["other"])} others not shown'
                    if panel.get("other") else f'{_n(panel["distinct"])} distinct')
            cards.append(_card(panel["title"], _img(counts_png(panel)), note))
        elif panel["kind"] == "histogram" and panel.get("n"):
            note = (f'n = {_n(panel["n"])} · median {panel["median"]:.3g} · mean '
                    f'{panel["mean"]:.3g} · 5–95%: {panel["p5"]:.3g}–{panel["p95"]:.3g}'
                    + (f' · {_n(panel["above"])} above {panel["edges"][-1]:.3g} (up to '
                       f'{panel["max"]:.3g}) not drawn' if panel.get("above") else ""))
            cards.append(_card(panel["title"], _img(histogram_png(panel)), note))
    tiles = "".join(_tile(s["title"], _pct_value(s["share"]),
                          f'{_n(s["true"])} of {_n(s["total"])} rows') for s in shares)
    return (heading + (f'<div class="tiles">{tiles}</div><br>' if tiles else "")
            + f'<div class="grid">{"".join(cards)}</div>')


def _card(title: str, body: str, note: str = "") -> str:
    return (f'<div class="card"><h3>{_e(title)}</h3>{body}'
            + (f'<div class="muted">{_e(note)}</div>' if note else "") + "</div>")


def _img(png: bytes) -> str:
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _drift_section(drift: dict | None, name: str = "") -> str:
    if not drift:
        return ""
    from corpusmill.jobs.reporting.report_plots import drift_png

    cards, tiles = [], []
    for panel in drift["panels"]:
        if panel["kind"] == "counts":
            tiles.append(_tile(f'{panel["title"]}: change', f'{100 * panel["tvd"]:.1f}%',
                               "total variation distance"))
            cards.append(_card(panel["title"] + ": earlier rows vs this run's",
                               _img(drift_png(panel))))
        elif panel["kind"] == "histogram":
            b, a = panel["before"], panel["after"]
            tiles.append(_tile(panel["title"], f'{_n(a["median"], 3)}',
                               f'median now; was {_n(b["median"], 3)}'))
        else:
            tiles.append(_tile(panel["title"], _pct_value(panel["after"]),
                               f'now; was {_pct_value(panel["before"])}'))
    heading = (f"<code>{_e(name)}</code>: change against earlier runs" if name
               else "Change against earlier runs")
    return (f'<h2>{heading}</h2><p class="muted">{_n(drift["rows_new"])} rows '
            f'added by this run against {_n(drift["rows_before"])} written before.</p>'
            f'<div class="tiles">{"".join(tiles)}</div><br><div class="grid">{"".join(cards)}'
            f'</div>')


# ---------------------------------------------------------------- several tasks

def _tasks_section(report: dict) -> str:
    """A job with several tasks: what each ran, its rows and inference time side by side
    (with a plot of the busy seconds), where it ran; whether they shared a tokenization."""
    from corpusmill.jobs.reporting.report import tokenization_text
    from corpusmill.jobs.reporting.report_plots import tasks_png

    tasks = report["tasks"]
    body = []
    for t in tasks:
        time, where = t.get("time") or {}, t.get("placement") or {}
        actors = where.get("actors") or {}
        body.append(
            f'<tr><td><code>{_e(t["name"])}</code></td><td>{_e(t["task"])}</td>'
            f'<td>{_e(_short_model(t["model"]))}</td><td class="n">{_n(time.get("rows"))}</td>'
            f'<td class="n">{_busy(time.get("seconds"))}</td>'
            f'<td class="n">{_pct_value(time.get("share"))}</td>'
            f'<td class="n">{_n(time.get("rows_per_second"), 1)}</td>'
            f'<td class="n">{_n(t["rows"]["errored"])}</td>'
            f'<td>{_e(where.get("device") or "–")} · {_e(where.get("backend") or "–")} · '
            f'{_e(where.get("dtype") or "–")}</td>'
            f'<td class="n">{_n(actors.get("peak", actors.get("max")))}</td></tr>')
    table = ("<table><tr><th>task</th><th>runs</th><th>model</th><th>rows</th>"
             "<th>inference (busy)</th><th>share</th><th>rows / busy s</th>"
             "<th>with errors</th><th>device · backend · dtype</th><th>actors</th></tr>"
             f'{"".join(body)}</table>')
    timed = [t for t in tasks if t.get("time")]
    cards = [_card("Inference busy time by task (summed over its actors)",
                   _img(tasks_png(timed)), "the tasks' pools run side by side on the same "
                                           "blocks: busy time is not wall time")] if timed else []
    tokenization = report.get("tokenization")
    shared = (f'<p>Tokenization: {_e(tokenization_text(tokenization))} '
              f'<span class="muted">({_n(tokenization["rows_tokenized"])} rows tokenized for '
              f'{_n(tokenization["rows"])} rows in)</span></p>' if tokenization
              else '<p class="muted">tokenization: not recorded</p>')
    return (f'<h2>Tasks</h2><p class="muted">each task\'s columns are prefixed with its name '
            f'(<code>{_e(tasks[0]["prefix"])}…</code>); <code>error</code> joins their errors'
            f'</p>{table}{shared}' + (f'<div class="grid">{"".join(cards)}</div>' if cards
                                      else ""))


def _busy(seconds) -> str:
    """Busy seconds: short ones (a small job's inference) with their digits."""
    if seconds is None or float(seconds) >= 10:
        return _duration(seconds)
    return f"{float(seconds):.3g} s"


def _task_section(task: dict, metrics: dict | None) -> str:
    """One task of a job with several: what it ran, then its quality against gold, output
    distributions and change, as a single-task report shows them."""
    options = task.get("options") or {}
    facts = [f'<b>{_e(task["task"])}</b> with <code>{_e(task["model"])}</code>'
             + (f' at revision <code>{_e(task["revision"])}</code>' if task.get("revision")
                else ""),
             f'{_n(task["rows"]["ok"])} row(s) without its error, '
             f'{_n(task["rows"]["errored"])} with']
    if options:
        facts.append("options: " + ", ".join(f"{_e(k)} <code>{_e(v)}</code>"
                                             for k, v in options.items()))
    return (f'<h2>Task <code>{_e(task["name"])}</code></h2><p>{" · ".join(facts)}</p>'
            + _metrics_section(metrics) + _outputs_section(task.get("outputs") or [],
                                                           task["name"])
            + _drift_section(task.get("drift"), task["name"]))


# ---------------------------------------------------------------- time and resources

def _time_section(time: dict | None) -> str:
    from corpusmill.jobs.reporting.report_plots import stages_png, throughput_png

    if not time:
        return f"<h2>Time</h2>{NOT_RECORDED}"
    cards = []
    if time.get("stages"):
        cards.append(_card("Busy time by stage (summed over workers)",
                           _img(stages_png(time["stages"])),
                           "stages overlap in a streaming run: busy time is not wall time"))
    if time.get("throughput"):
        cards.append(_card("Throughput over time", _img(throughput_png(time["throughput"])),
                           f'wall time {_duration(time.get("wall_seconds"))}'))
    if not cards:
        return f"<h2>Time</h2>{NOT_RECORDED.replace('not recorded', 'per-stage times and throughput over time: not recorded')}"
    return f'<h2>Time</h2><div class="grid">{"".join(cards)}</div>'


def _resources_section(report: dict) -> str:
    from corpusmill.jobs.reporting.report_plots import actors_png

    placement, tokens = report.get("placement"), report.get("tokens")
    parts = ["<h2>Where it ran</h2>"]
    if report.get("tasks") is not None:
        parts.append('<p class="muted">each task\'s placement: see Tasks above; tokens and '
                     'actors below are all the tasks\' together</p>')
    elif placement:
        actors = placement.get("actors") or {}
        executor = placement.get("executor")
        tiles = [_tile("executor", _e({"process": "this process", "ray": "Ray"}.get(
                           executor, "Ray")), _e(placement.get("executor_reason") or "")),
                 _tile("device", _e(placement.get("device"))),
                 _tile("backend", _e(placement.get("backend"))),
                 _tile("dtype", _e(placement.get("dtype"))),
                 _tile("actors", _n(actors.get("peak", actors.get("max"))),
                       f'min {_n(actors.get("min"))} · max {_n(actors.get("max"))}'),
                 _tile("GPUs / actor", f'{placement.get("num_gpus_per_actor") or 0:g}'),
                 _tile("torch threads", _n(placement.get("torch_threads")))]
        parts.append(f'<div class="tiles">{"".join(tiles)}</div><br>')
    else:
        parts.append('<p class="muted">placement: not recorded</p>')
    cards = []
    if tokens:
        cards.append(_card("Tokens", "<table>" + "".join(
            f'<tr><td>{_e(k)}</td><td class="n">{v}</td></tr>' for k, v in (
                ("tokens (without padding)", _n(tokens.get("tokens"))),
                ("tokens computed (with padding)", _n(tokens.get("padded_tokens"))),
                ("padding efficiency", _pct_value(tokens.get("padding_efficiency"))),
                ("windows", _n(tokens.get("windows"))),
                ("tokens / s (wall)", _n(tokens.get("tokens_per_second"), 1)))) + "</table>"))
    if report.get("actors"):
        cards.append(_card("Rows per actor", _img(actors_png(report["actors"]))))
    if report.get("nodes"):
        rows = "".join(f'<tr><td>{_e(str(n.get("node_id") or "")[:12])}</td><td>{_e(n.get("host"))}</td>'
                       f'<td class="n">{_n(n.get("rows"))}</td><td class="n">'
                       f'{_n(n.get("actors"))}</td><td class="n">{_n(n.get("gpus"))}</td></tr>'
                       for n in report["nodes"])
        cards.append(_card("Nodes", "<table><tr><th>node</th><th>host</th><th>rows</th>"
                           f"<th>actors</th><th>GPUs</th></tr>{rows}</table>"))
    if not tokens and not report.get("actors"):
        parts.append('<p class="muted">tokens and rows per actor: not recorded</p>')
    parts.append(f'<div class="grid">{"".join(cards)}</div>')
    return "".join(parts)


def _errors_section(errors: list[dict], rows: dict) -> str:
    if not errors:
        return "<h2>Errors</h2><p>No row failed.</p>"
    body = "".join(
        f'<tr><td class="n">{_n(g["count"])}</td><td class="msg">{_e(g["message"])}'
        + (f'<div class="muted">kind: {_e(g["kind"])}</div>' if g["kind"] != g["message"] else "")
        + f'</td><td>{_e(", ".join(map(str, g["example_ids"])))}</td></tr>' for g in errors)
    return (f'<h2>Errors</h2><p class="muted">{_n(sum(g["count"] for g in errors))} row(s) '
            f'with an error, by kind (numbers and quoted values blanked):</p>'
            f'<table class="err"><tr><th>rows</th><th>message</th><th>example ids</th></tr>'
            f'{body}</table>')
