"""Write an evaluation's results as machine-readable files, plots and one self-contained HTML page.

The files (``metrics.json/csv``, ``trades.csv``, ``equity.csv``) are what later analysis reads;
the PNGs and ``report.html`` are what a person reads. The HTML embeds its images as base64 data
URIs and carries its own CSS, so it can be mailed, archived or opened offline and still show the
exact numbers of the run it describes, next to the provenance that makes it reproducible.

Plots use matplotlib's object API (:class:`~matplotlib.figure.Figure`, rendered by Agg) rather
than ``pyplot``: no display is needed, no global backend is switched, and no figure leaks.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping
from functools import cache
from numbers import Number
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from clstm_ppo.evaluate.results import StrategyRun

TRADES_SHOWN = 200
DPI = 110
AGENT_COLOR = "#1f3b73"
GAIN_COLOR, LOSS_COLOR = "#2e7d32", "#c62828"
_RATIO_KEYS = ("sharpe", "sortino", "calmar", "ratio")
_PERCENT_KEYS = ("return", "drawdown", "rate", "volatility", "pct")
_USD_KEYS = ("cost", "value", "pnl", "usd", "cash", "fee", "capital", "equity")
_COUNT_KEYS = ("trades", "count", "days", "n_")


def format_metric(name: str, value: Any) -> str:
    """Format a metric the same way everywhere, chosen by its name.

    Returns, drawdowns, rates and volatilities are fractions shown as %; Sharpe-like ratios get two
    decimals; USD amounts get a $ and thousands separators; counts are integers. A missing or NaN
    value is "–" so that an undefined metric (no trades, too few days) never reads as a zero.
    """
    if value is None or isinstance(value, str):
        return value or "–"
    if not isinstance(value, Number):
        return str(value)
    number = float(value)  # type: ignore[arg-type]
    if math.isnan(number):
        return "–"
    if math.isinf(number):
        return "∞" if number > 0 else "-∞"
    key = name.lower()
    if any(k in key for k in _RATIO_KEYS):
        return f"{number:.2f}"
    if any(k in key for k in _PERCENT_KEYS):
        return f"{number * 100:.2f}%"
    if any(k in key for k in _USD_KEYS):
        return _usd(number, decimals=2)
    if number.is_integer() and (any(k in key for k in _COUNT_KEYS) or abs(number) >= 1000):
        return f"{number:,.0f}"
    return f"{number:.4g}"


@cache
def _catalogue() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Strategy names, and the category (hold, close or strategy name) of every action id.

    Imported lazily: the action module pulls in the market machinery (and torch), which a report
    written from saved results should not have to pay for until it draws the agent's plots.
    """
    from clstm_ppo.envs import actions as book

    strategy = book.action_strategy(book.N_MULTI_LEG_ACTIONS)
    closes = range(book.CLOSE_FIRST, book.CLOSE_LAST + 1)
    categories = tuple(
        "hold" if a == book.HOLD else "close" if a in closes else book.STRATEGY_NAMES[s]
        for a, s in enumerate(strategy)
    )
    return tuple(book.STRATEGY_NAMES), categories


def _colors() -> dict[str, str]:
    """One fixed color per category, so a strategy has the same color in every plot."""
    strategies = {name: f"C{i % 10}" for i, name in enumerate(_catalogue()[0])}
    return {"hold": "#9e9e9e", "close": "#424242", "other": "#e377c2"} | strategies


def _strategy_label(value: Any) -> str:
    """Trades may label their strategy by name or by index into STRATEGY_NAMES."""
    names = _catalogue()[0]
    if isinstance(value, (int, np.integer)) and 0 <= int(value) < len(names):
        return names[int(value)]
    return str(value)


def _mpl(text: str) -> str:
    """Matplotlib reads text between two '$' as math; names and USD amounts must stay literal."""
    return text.replace("$", r"\$")


def _usd(value: float, decimals: int = 0) -> str:
    return f"{'-' if value < 0 else ''}${abs(value):,.{decimals}f}"


def _empty_panel(ax: Axes, message: str) -> None:
    """Say why a panel is empty instead of drawing blank axes (or failing on no data)."""
    style = {"ha": "center", "va": "center", "color": "#555555", "fontsize": 12}
    ax.text(0.5, 0.5, _mpl(message), transform=ax.transAxes, **style)
    ax.set_xticks([])
    ax.set_yticks([])


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, format="png")
    return path


def _line_style(run: StrategyRun) -> dict[str, Any]:
    """The agent is drawn bold and on top, baselines thin: the comparison reads at a glance."""
    if run.kind == "agent":
        return {"linewidth": 2.6, "color": AGENT_COLOR, "zorder": 5}
    return {"linewidth": 1.1, "alpha": 0.85, "zorder": 2}


def plot_equity(runs: list[StrategyRun], path: Path) -> Path:
    """Equity curves normalised to 1.0 at the start, so runs of different size compare directly
    (each legend entry keeps the starting USD value and the total return)."""
    fig = Figure(figsize=(10, 5.2), layout="constrained")
    ax = fig.add_subplot()
    drawn = [
        run for run in runs if len(run.values) and np.isfinite(run.values[0]) and run.values[0]
    ]
    for run in drawn:
        growth = np.asarray(run.values, dtype=float) / run.values[0]
        label = f"{run.name} ({growth[-1] - 1:+.1%}, start {_usd(run.values[0])})"
        ax.plot(run.dates, growth, label=_mpl(label), **_line_style(run))
    if drawn:
        ax.axhline(1.0, color="#888888", linewidth=0.8, linestyle=":")
        ax.set_ylabel("portfolio value / initial value (growth of 1 USD)")
        ax.legend(fontsize=8, loc="best")
        ax.grid(alpha=0.3)
    else:
        _empty_panel(ax, "no equity curves to draw")
    ax.set_title("Equity curves (daily, marked at mid)")
    return _save(fig, path)


def plot_drawdown(runs: list[StrategyRun], path: Path) -> Path:
    """Drawdown from the running peak of every run, in %; the agent's is shaded."""
    fig = Figure(figsize=(10, 4.5), layout="constrained")
    ax = fig.add_subplot()
    drawn = [run for run in runs if len(run.values)]
    for run in drawn:
        values = np.asarray(run.values, dtype=float)
        drawdown = (values / np.maximum.accumulate(values) - 1.0) * 100.0
        label = _mpl(f"{run.name} (max {drawdown.min():.1f}%)")
        ax.plot(run.dates, drawdown, label=label, **_line_style(run))
        if run.kind == "agent":
            ax.fill_between(run.dates, drawdown, 0.0, color=AGENT_COLOR, alpha=0.15)
    if drawn:
        ax.set_ylabel("drawdown from running peak (%)")
        ax.legend(fontsize=8, loc="lower left")
        ax.grid(alpha=0.3)
    else:
        _empty_panel(ax, "no runs to draw")
    ax.set_title("Drawdowns")
    return _save(fig, path)


def plot_actions(agent: StrategyRun | None, path: Path) -> Path:
    """How the agent acted: counts per action id (colored by strategy) and per category.

    A policy that collapsed onto holding, or onto one strategy, shows up here before any metric.
    """
    fig = Figure(figsize=(11, 7.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, height_ratios=(1.2, 1.0))
    actions = np.asarray([] if agent is None or agent.actions is None else agent.actions, float)
    actions = actions[np.isfinite(actions) & (actions >= 0)].astype(np.int64)
    if actions.size == 0:
        why = "no agent run" if agent is None else f"{agent.name}: no actions recorded"
        for ax in (top, bottom):
            _empty_panel(ax, why)
        fig.suptitle("Agent action distribution")
        return _save(fig, path)
    names, known = _catalogue()
    colors = _colors()
    counts = np.bincount(actions, minlength=len(known))
    categories = np.array([*known, *["other"] * (counts.size - len(known))])
    top.bar(np.arange(counts.size), counts, width=0.85, color=[colors[c] for c in categories])
    order = ["hold", "close", *names] + (["other"] if counts.size > len(known) else [])
    per_category = [int(counts[categories == c].sum()) for c in order]
    used = [c for c, n in zip(order, per_category, strict=True) if n]
    top.legend(handles=[Patch(color=colors[c], label=c) for c in used], fontsize=7, ncol=4)
    top.set_ylim(0, counts.max() * 1.35)
    top.set_xticks([0, 1, 11, 21, 31, 46, 61, 66, 71, 76, 81, 86])
    top.set(xlim=(-1, counts.size), xlabel="action id", ylabel="days chosen")
    top.set_title(_mpl(f"{agent.name}: actions per id ({actions.size} days)"))
    bars = bottom.bar(order, per_category, color=[colors[c] for c in order])
    bottom.bar_label(bars, fontsize=8)
    bottom.tick_params(axis="x", labelrotation=35, labelsize=8)
    bottom.set(ylabel="days chosen", title="per strategy type (opening actions), hold and close")
    for ax in (top, bottom):
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return _save(fig, path)


def plot_pnl_by_strategy(agent: StrategyRun | None, path: Path) -> Path:
    """Where the agent's realised P&L came from: sum and count of closed trades per strategy."""
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    trades = pd.DataFrame() if agent is None else agent.trades
    if trades.empty or not {"strategy", "pnl"} <= set(trades.columns):
        why = "no agent run" if agent is None else f"{agent.name}: no closed trades"
        for ax in (left, right):
            _empty_panel(ax, why)
        fig.suptitle("Agent closed-trade P&L by strategy")
        return _save(fig, path)
    labels = trades["strategy"].map(_strategy_label)
    grouped = trades["pnl"].astype(float).groupby(labels).agg(["sum", "count"])
    names = _catalogue()[0]
    order = [n for n in names if n in grouped.index] + sorted(set(grouped.index) - set(names))
    grouped = grouped.loc[order]
    signs = [GAIN_COLOR if v >= 0 else LOSS_COLOR for v in grouped["sum"]]
    bars = left.bar(order, grouped["sum"], color=signs)
    left.bar_label(bars, labels=[_mpl(_usd(v)) for v in grouped["sum"]], fontsize=8)
    left.axhline(0.0, color="#444444", linewidth=0.8)
    left.set_ylabel("sum of closed-trade P&L (USD)")
    left.set_title(_mpl(f"{agent.name}: total P&L {_usd(grouped['sum'].sum())}"))
    bars = right.bar(order, grouped["count"], color=[_colors().get(n, "C7") for n in order])
    right.bar_label(bars, fontsize=8)
    right.set(ylabel="closed trades", title=f"{int(grouped['count'].sum())} closed trades")
    right.yaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (left, right):
        ax.tick_params(axis="x", labelrotation=35, labelsize=8)
    return _save(fig, path)


def _json_value(value: Any) -> Any:
    """NaN/inf become null: strict JSON has no NaN, and null reads back as 'undefined'."""
    number = float(value)
    return number if math.isfinite(number) else None


def _equity_frame(runs: list[StrategyRun]) -> pd.DataFrame:
    """Daily values side by side; an outer join keeps every day of runs with differing calendars."""
    columns = {
        run.name: pd.Series(np.asarray(run.values, dtype=float), index=pd.DatetimeIndex(run.dates))
        for run in runs
    }
    frame = pd.DataFrame(columns)
    frame.index.name = "date"
    return frame


def _trades_frame(runs: list[StrategyRun]) -> pd.DataFrame:
    """All runs' closed trades in one table, ``run`` first; empty runs contribute no rows."""
    frames = [run.trades.assign(run=run.name) for run in runs if not run.trades.empty]
    columns = ["run", "strategy", "opened", "closed", "pnl"]
    if not frames:
        return pd.DataFrame(columns=columns)
    frame = pd.concat(frames, ignore_index=True)
    return frame[[*columns[:1], *[c for c in frame.columns if c != "run"]]]


def _cell(column: str, value: Any) -> str:
    """A trade-table cell: dates as days, money as USD, anything else as text."""
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d") if value == value.normalize() else str(value)
    if column == "strategy":
        return _strategy_label(value)
    if isinstance(value, Number) and not isinstance(value, bool):
        return format_metric(column, value)
    return "–" if value is None else str(value)


def _definition_list(mapping: Mapping[str, Any]) -> str:
    """Provenance as nested <dl>: any keys the caller recorded, nothing assumed."""
    items = []
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            body = _definition_list(value)
        elif isinstance(value, (list, tuple)):
            body = html.escape(", ".join(str(v) for v in value))
        else:
            body = html.escape(str(value))
        items.append(f"<dt>{html.escape(str(key))}</dt><dd>{body}</dd>")
    return f"<dl>{''.join(items)}</dl>"


def _table(headers: list[str], rows: list[tuple[list[str], str]]) -> str:
    """An escaped HTML table; ``rows`` are (cells, css class of the row)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        f'<tr class="{html.escape(css)}">'
        + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
        + "</tr>"
        for cells, css in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = (
    'body{font-family:system-ui,"Segoe UI",Helvetica,Arial,sans-serif;margin:2em auto;'
    "max-width:1200px;padding:0 1em;color:#222}h2{border-bottom:1px solid #ccc;margin-top:1.6em}"
    "dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em;margin:.3em 0}"
    "dt{font-weight:600}dd{margin:0}table{border-collapse:collapse;font-size:.9em}"
    "th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right;white-space:nowrap}"
    "th:nth-child(-n+2),td:nth-child(-n+2){text-align:left}thead th{background:#f2f2f2}"
    "tr.agent td{background:#fff4c2;font-weight:600}figure{margin:1em 0}"
    "img{max-width:100%;height:auto;border:1px solid #eee}.note{color:#555;font-size:.9em}"
)


def _html(
    title: str,
    provenance: Mapping[str, Any],
    metrics_table: str,
    plots: dict[str, Path],
    agent: StrategyRun | None,
) -> str:
    """The page: provenance, metrics, plots (inline base64) and the agent's trades."""
    figures = "".join(
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,'
        f'{base64.b64encode(path.read_bytes()).decode("ascii")}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        for caption, path in plots.items()
    )
    if agent is None:
        trades_html = '<p class="note">No agent run in this report.</p>'
    elif agent.trades.empty:
        trades_html = f'<p class="note">{html.escape(agent.name)} closed no trades.</p>'
    else:
        shown = agent.trades.head(TRADES_SHOWN)
        columns = [str(c) for c in shown.columns]
        rows = [
            ([_cell(c, v) for c, v in zip(columns, row, strict=True)], "")
            for row in shown.itertuples(index=False)
        ]
        trades_html = _table(columns, rows)
        if len(agent.trades) > TRADES_SHOWN:
            trades_html += (
                f'<p class="note">Showing the first {TRADES_SHOWN} of {len(agent.trades):,} '
                "trades; all are in trades.csv.</p>"
            )
    agent_name = "" if agent is None else f" ({html.escape(agent.name)})"
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f"<h2>Provenance</h2>{_definition_list(provenance)}"
        f"<h2>Metrics</h2>{metrics_table}"
        '<p class="note">Returns, drawdowns, volatilities and rates in %; ratios to two decimals; '
        "USD amounts in dollars; – means undefined (e.g. no trades). The agent row is "
        "highlighted.</p>"
        f"<h2>Plots</h2>{figures}"
        f"<h2>Agent trades{agent_name}</h2>{trades_html}"
        "</body></html>\n"
    )


def write_report(
    out_dir: Path,
    runs: list[StrategyRun],
    provenance: dict,
    title: str = "CLSTM-PPO evaluation",
    metric_columns: list[str] | None = None,
) -> dict[str, Path]:
    """Write every report file into ``out_dir`` and return file name -> path.

    ``metrics.json`` and ``metrics.csv`` always carry every metric of every run (lossless);
    ``metric_columns`` only chooses which metrics, in which order, the HTML table shows (default:
    all, first-seen order). Run names must be unique: they key the equity columns and trade rows.
    """
    names = [run.name for run in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"run names must be unique, got {names}")
    for run in runs:
        if len(run.dates) != len(run.values):
            raise ValueError(f"{run.name}: {len(run.dates)} dates but {len(run.values)} values")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {name: out_dir / name for name in ("metrics.json", "metrics.csv", "trades.csv")}
    written["equity.csv"] = out_dir / "equity.csv"
    all_metrics = list(dict.fromkeys(key for run in runs for key in run.metrics))
    records = [
        {"name": run.name, "kind": run.kind}
        | {k: _json_value(run.metrics.get(k, math.nan)) for k in all_metrics}
        for run in runs
    ]
    text = json.dumps(records, indent=2, allow_nan=False)
    written["metrics.json"].write_text(text + "\n", encoding="utf-8")
    metrics_frame = pd.DataFrame(
        [{"name": run.name, "kind": run.kind} | run.metrics for run in runs],
        columns=["name", "kind", *all_metrics],
    )
    metrics_frame.to_csv(written["metrics.csv"], index=False)
    _trades_frame(runs).to_csv(written["trades.csv"], index=False)
    _equity_frame(runs).to_csv(written["equity.csv"])

    # The agent-specific plots and trade table describe the first run of kind "agent".
    agent = next((run for run in runs if run.kind == "agent"), None)
    label = "the agent" if agent is None else agent.name
    plots = {
        "Equity curves, normalised to 1.0 at the start": plot_equity(runs, out_dir / "equity.png"),
        "Drawdown from the running peak": plot_drawdown(runs, out_dir / "drawdown.png"),
        f"Action distribution of {label}": plot_actions(agent, out_dir / "actions.png"),
        f"Closed-trade P&L by strategy of {label}": plot_pnl_by_strategy(
            agent, out_dir / "pnl_by_strategy.png"
        ),
    }
    written |= {path.name: path for path in plots.values()}

    # The row class is the run's kind: CSS highlights the agent row.
    shown = all_metrics if metric_columns is None else list(metric_columns)
    rows = [
        ([run.name, run.kind, *(format_metric(m, run.metrics.get(m)) for m in shown)], run.kind)
        for run in runs
    ]
    table = _table(["run", "kind", *shown], rows)
    written["report.html"] = out_dir / "report.html"
    page = _html(title, provenance, table, plots, agent)
    written["report.html"].write_text(page, encoding="utf-8")
    return written
