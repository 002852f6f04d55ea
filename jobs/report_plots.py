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


def counts_png(panel: dict) -> bytes:
    """Horizontal bars, the most frequent value on top, each labelled with its count (or its
    rate per `per_rows` rows) and share."""
    values = panel["rates"] if panel.get("rates") else panel["counts"]
    labels = list(values)[::-1]
    heights = [values[k] for k in labels]
    total = panel.get("total") or sum(panel["counts"].values()) or 1
    fig, ax = _figure(0.3 * len(labels) + 0.7)
    bars = ax.barh([_short(k) for k in labels], heights, color=ACCENT, height=0.7)
    top = max(heights) if heights else 1
    for bar, key in zip(bars, labels):
        count = panel["counts"][key]
        text = (f"{values[key]:,.1f}" if panel.get("rates") else f"{count:,}")
        ax.text(bar.get_width() + top * 0.01, bar.get_y() + bar.get_height() / 2,
                f"{text}  ({100 * count / total:.0f}%)", va="center", fontsize=8.5, color=TEXT)
    ax.set_xlim(0, top * 1.22)
    ax.set_xlabel(f"per {panel['per_rows']:,} rows" if panel.get("rates") else "rows")
    ax.tick_params(axis="y", length=0)
    return _png(fig)


def histogram_png(panel: dict) -> bytes:
    edges, counts = np.asarray(panel["edges"]), np.asarray(panel["counts"])
    fig, ax = _figure(2.3)
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color=ACCENT,
           edgecolor="white", linewidth=0.5)
    ax.axvline(panel["median"], color=SECOND, linewidth=1.5, label=f"median {panel['median']:.3g}")
    ax.legend(frameon=False, loc="upper right", fontsize=8.5)
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
    names = [s["stage"] for s in stages][::-1]
    seconds = [s["seconds"] for s in stages][::-1]
    shares = [s["share"] for s in stages][::-1]
    fig, ax = _figure(0.34 * len(names) + 0.7)
    bars = ax.barh(names, seconds, color=[SECOND if n == "inference" else ACCENT for n in names],
                   height=0.65)
    top = max(seconds) if seconds else 1
    for bar, value, share in zip(bars, seconds, shares):
        ax.text(bar.get_width() + top * 0.01, bar.get_y() + bar.get_height() / 2,
                f"{value:,.1f} s  ({100 * share:.0f}%)", va="center", fontsize=8.5)
    ax.set_xlim(0, top * 1.25)
    ax.set_xlabel("busy seconds")
    ax.tick_params(axis="y", length=0)
    return _png(fig)


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
    names = [str(a.get("actor")) for a in actors][::-1]
    rows = [a.get("rows") or 0 for a in actors][::-1]
    fig, ax = _figure(0.3 * len(names) + 0.7)
    bars = ax.barh([_short(n, 22) for n in names], rows, color=ACCENT, height=0.65)
    top = max(rows) if rows else 1
    for bar, actor in zip(bars, actors[::-1]):
        seconds = actor.get("seconds")
        rate = f", {actor['rows'] / seconds:,.1f} rows/s" if seconds else ""
        ax.text(bar.get_width() + top * 0.01, bar.get_y() + bar.get_height() / 2,
                f"{actor.get('rows', 0):,}{rate}", va="center", fontsize=8.5)
    ax.set_xlim(0, top * 1.35)
    ax.set_xlabel("rows")
    ax.tick_params(axis="y", length=0)
    return _png(fig)


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
