"""The run report's plots: matplotlib figures (Agg, no display) returned as PNG bytes, in one
small consistent style: few colours, no chart junk, values written on the bars."""
from __future__ import annotations

import io

import numpy as np

ACCENT, SECOND, MUTED, TEXT = "#3563e9", "#f08c2e", "#9aa5b8", "#1d2433"
WIDTH = 5.6  # inches; at 110 dpi a plot fills a report card


def _figure(height: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9.5, "axes.edgecolor": MUTED, "axes.labelcolor": TEXT,
                         "xtick.color": TEXT, "ytick.color": TEXT, "axes.titlesize": 10})
    fig, ax = plt.subplots(figsize=(WIDTH, height))
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig, ax


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _short(label: str, width: int = 28) -> str:
    return label if len(label) <= width else label[:width - 1] + "…"


def _bars(labels: list[str], values: list[float], texts: list[str], xlabel: str,
          colors: list[str] | None = None, room: float = 1.25) -> bytes:
    """Horizontal bars, the first label on top, each with its text written after it."""
    fig, ax = _figure(0.3 * len(labels) + 0.7)
    bars = ax.barh([_short(k) for k in labels][::-1], values[::-1], height=0.68,
                   color=(colors or [ACCENT] * len(labels))[::-1])
    top = max(values) if values else 1
    for bar, text in zip(bars, texts[::-1]):
        ax.text(bar.get_width() + top * 0.01, bar.get_y() + bar.get_height() / 2, text,
                va="center", fontsize=8.5, color=TEXT)
    ax.set_xlim(0, (top or 1) * room)
    ax.set_xlabel(xlabel)
    ax.tick_params(axis="y", length=0)
    return _png(fig)


def counts_png(panel: dict) -> bytes:
    """The most frequent value on top, each labelled with its count (or its rate per
    `per_rows` rows) and share."""
    values = panel["rates"] if panel.get("rates") else panel["counts"]
    total = panel.get("total") or sum(panel["counts"].values()) or 1
    texts = [(f"{values[k]:,.1f}" if panel.get("rates") else f"{panel['counts'][k]:,}")
             + f"  ({100 * panel['counts'][k] / total:.0f}%)" for k in values]
    return _bars(list(values), list(values.values()), texts,
                 f"per {panel['per_rows']:,} rows" if panel.get("rates") else "rows", room=1.22)


def histogram_png(panel: dict) -> bytes:
    edges, counts = np.asarray(panel["edges"]), np.asarray(panel["counts"])
    fig, ax = _figure(2.3)
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color=ACCENT,
           edgecolor="white", linewidth=0.5)
    ax.axvline(panel["median"], color=SECOND, linewidth=1.5, label=f"median {panel['median']:.3g}")
    ax.legend(frameon=False, loc="best", fontsize=8.5)
    ax.set_ylabel("rows" if panel.get("n") == panel.get("rows") else "count")
    return _png(fig)


def confusion_png(matrix: dict) -> bytes:
    """Counts, coloured by the share of each gold row (so small classes read as well)."""
    labels, counts = matrix["labels"], np.asarray(matrix["matrix"], dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = min(1.0 + 0.5 * len(labels), 7.5)
    fig, ax = _figure(size)
    fig.set_size_inches(min(size + 1.2, WIDTH + 1), size)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), [_short(l, 14) for l in labels], rotation=40, ha="right")
    ax.set_yticks(range(len(labels)), [_short(l, 18) for l in labels])
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    if len(labels) <= 16:
        for i in range(len(labels)):
            for j in range(len(labels)):
                if counts[i, j]:
                    ax.text(j, i, f"{counts[i, j]:.0f}", ha="center", va="center", fontsize=8,
                            color="white" if shares[i, j] > 0.55 else TEXT)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    return _png(fig)


def stages_png(stages: list[dict]) -> bytes:
    """Busy seconds per stage, inference highlighted."""
    return _bars([s["stage"] for s in stages], [s["seconds"] for s in stages],
                 [f"{s['seconds']:,.1f} s  ({100 * s['share']:.0f}%)" for s in stages],
                 "busy seconds",
                 colors=[SECOND if s["stage"] == "inference" else ACCENT for s in stages])


def tasks_png(tasks: list[dict]) -> bytes:
    """A job with several tasks: each task's inference busy seconds, with rows and share."""
    times = [t["time"] for t in tasks]
    texts = [(f"{x['seconds']:,.1f}" if x["seconds"] >= 10 else f"{x['seconds']:.3g}")
             + f" s  ({100 * x['share']:.0f}%), {x['rows'] or 0:,} rows" for x in times]
    return _bars([t["name"] for t in tasks], [x["seconds"] for x in times], texts,
                 "busy seconds", room=1.5)


def throughput_png(points: list[list[float]]) -> bytes:
    t, rate = np.asarray(points).T
    fig, ax = _figure(2.3)
    ax.fill_between(t, rate, color=ACCENT, alpha=0.15, linewidth=0)
    ax.plot(t, rate, color=ACCENT, linewidth=1.6)
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("rows / s")
    ax.set_ylim(bottom=0)
    return _png(fig)


def actors_png(actors: list[dict]) -> bytes:
    """Rows per actor, with its rows/s when its busy time is known."""
    rows = [a.get("rows") or 0 for a in actors]
    texts = [f"{r:,}" + (f", {r / a['seconds']:,.1f} rows/s" if a.get("seconds") else "")
             for r, a in zip(rows, actors)]
    return _bars([str(a.get("actor")) for a in actors], rows, texts, "rows", room=1.35)


def drift_png(panel: dict) -> bytes:
    """Each value's share among earlier rows and among this run's rows, side by side."""
    labels = list(dict.fromkeys(list(panel["after"]) + list(panel["before"])))[:12][::-1]
    before = [panel["before"].get(k, 0.0) * 100 for k in labels]
    after = [panel["after"].get(k, 0.0) * 100 for k in labels]
    y = np.arange(len(labels))
    fig, ax = _figure(0.38 * len(labels) + 0.8)
    ax.barh(y + 0.2, before, height=0.38, color=MUTED, label="earlier runs")
    ax.barh(y - 0.2, after, height=0.38, color=ACCENT, label="this run")
    ax.set_yticks(y, [_short(k) for k in labels])
    ax.set_xlabel("% of rows")
    ax.legend(frameon=False, fontsize=8.5, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2)
    ax.tick_params(axis="y", length=0)
    return _png(fig)
