"""The evaluation report: files round-trip, images are real PNGs, the HTML is safe, standalone."""

from __future__ import annotations

import base64
import io
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from clstm_ppo.evaluate.report import TRADES_SHOWN, format_metric, write_report
from clstm_ppo.evaluate.results import StrategyRun

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EVIL = "<script>alert(1)</script>"
EXPECTED_FILES = {
    "metrics.json",
    "metrics.csv",
    "trades.csv",
    "equity.csv",
    "equity.png",
    "drawdown.png",
    "actions.png",
    "pnl_by_strategy.png",
    "report.html",
}
PROVENANCE = {
    "data_source": "alpaca SPY options (fixture)",
    "split": {"name": "test", "start": "2024-01-02", "end": "2024-03-25"},
    "config_hash": "cafe1234beef",
    "git_commit": "0123456789abcdef",
    "seeds": [0, 1, 2],
}
IMG_SRC = re.compile(r'<img[^>]*\ssrc="([^"]*)"')


def _metrics(rng: np.random.Generator, trades: int) -> dict[str, float]:
    return {
        "total_return": float(rng.normal(0.02, 0.05)),
        "sharpe": float(rng.normal(0.8, 0.5)),
        "max_drawdown": float(rng.uniform(0.01, 0.2)),
        "win_rate": float(rng.uniform()) if trades else math.nan,
        "trades": float(trades),
        "costs_paid": float(rng.uniform(0, 5000)),
    }


def _trades(rng: np.random.Generator, dates: pd.DatetimeIndex, n: int) -> pd.DataFrame:
    strategies = ["long_call", "covered_call", "iron_condor", "butterfly", "long_put"]
    opened = rng.integers(0, len(dates) - 5, n)
    return pd.DataFrame(
        {
            "strategy": [strategies[i % len(strategies)] for i in range(n)],
            "opened": dates[opened],
            "closed": dates[opened + 3],
            "pnl": rng.normal(10.0, 300.0, n).round(2),
        }
    )


def make_runs(agent_trades: int = 12) -> list[StrategyRun]:
    """60 business days: an agent that trades, buy-and-hold, cash and a run with a hostile name."""
    rng = np.random.default_rng(3)
    dates = pd.bdate_range("2024-01-02", periods=60)
    walk = 100_000 * np.cumprod(1 + rng.normal(0.0005, 0.01, 60))
    actions = rng.choice([0, 0, 0, 3, 15, 22, 35, 50, 63, 72, 83, 88], size=60)
    empty = pd.DataFrame(columns=["strategy", "opened", "closed", "pnl"])
    return [
        StrategyRun(
            "clstm-ppo",
            dates,
            walk,
            _trades(rng, dates, agent_trades),
            812.5,
            actions=actions,
            metrics=_metrics(rng, agent_trades),
            kind="agent",
        ),
        StrategyRun(
            "buy_and_hold",
            dates,
            100_000 * np.cumprod(1 + rng.normal(0, 0.012, 60)),
            empty,
            12.0,
            metrics=_metrics(rng, 0),
        ),
        StrategyRun(
            "cash", dates, np.full(60, 100_000.0), pd.DataFrame(), 0.0, metrics=_metrics(rng, 0)
        ),
        StrategyRun(EVIL, dates, np.linspace(100_000, 95_000, 60), empty, 0.0, metrics={}),
    ]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], list[StrategyRun]]:
    runs = make_runs()
    return write_report(tmp_path_factory.mktemp("report"), runs, PROVENANCE), runs


def assert_png(data: bytes, min_size: tuple[int, int] = (400, 300)) -> tuple[int, int]:
    """Real PNG bytes: the signature, a PIL verify, and a size a person can read."""
    assert data[:8] == PNG_SIGNATURE
    Image.open(io.BytesIO(data)).verify()
    size = Image.open(io.BytesIO(data)).size
    assert size[0] >= min_size[0] and size[1] >= min_size[1], size
    return size


def test_every_file_is_written(report: tuple[dict[str, Path], list[StrategyRun]]) -> None:
    written, _ = report
    assert set(written) == EXPECTED_FILES
    for path in written.values():
        assert path.is_file() and path.stat().st_size > 0, path
    for name in EXPECTED_FILES:
        assert (written["report.html"].parent / name).exists()


def test_metrics_round_trip(report: tuple[dict[str, Path], list[StrategyRun]]) -> None:
    written, runs = report
    keys = list(dict.fromkeys(k for run in runs for k in run.metrics))
    records = json.loads(written["metrics.json"].read_text())
    frame = pd.read_csv(written["metrics.csv"], keep_default_na=False, na_values=[""])
    assert [r["name"] for r in records] == frame["name"].tolist() == [r.name for r in runs]
    assert [r["kind"] for r in records] == frame["kind"].tolist() == [r.kind for r in runs]
    for run, record, (_, row) in zip(runs, records, frame.iterrows(), strict=True):
        for key in keys:
            expected = run.metrics.get(key, math.nan)
            from_json = math.nan if record[key] is None else record[key]
            for got in (from_json, float(row[key])):
                assert got == expected or (math.isnan(got) and math.isnan(expected)), (run, key)


def test_equity_and_trades_round_trip(report: tuple[dict[str, Path], list[StrategyRun]]) -> None:
    written, runs = report
    equity = pd.read_csv(written["equity.csv"], index_col="date", parse_dates=True)
    assert list(equity.columns) == [run.name for run in runs]
    for run in runs:
        assert equity.index.equals(run.dates)
        np.testing.assert_array_equal(equity[run.name].to_numpy(), run.values)
    trades = pd.read_csv(written["trades.csv"], parse_dates=["opened", "closed"])
    assert trades.columns[0] == "run"
    assert trades["run"].tolist() == ["clstm-ppo"] * len(runs[0].trades)
    np.testing.assert_array_equal(trades["pnl"].to_numpy(), runs[0].trades["pnl"].to_numpy())
    assert (trades["opened"] == runs[0].trades["opened"]).all()


def test_images_are_embedded_valid_pngs(report: tuple[dict[str, Path], list[StrategyRun]]) -> None:
    written, _ = report
    page = written["report.html"].read_text()
    sources = IMG_SRC.findall(page)
    assert len(sources) == 4
    disk = {written[name].read_bytes() for name in written if name.endswith(".png")}
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert_png(data)
        assert data in disk  # the page shows exactly the files written next to it
    for name in EXPECTED_FILES:
        if name.endswith(".png"):
            assert_png(written[name].read_bytes())


def test_html_is_self_contained_and_escaped(
    report: tuple[dict[str, Path], list[StrategyRun]],
) -> None:
    written, runs = report
    page = written["report.html"].read_text()
    assert page.startswith("<!DOCTYPE html>") and "<title>CLSTM-PPO evaluation</title>" in page
    for value in ("alpaca SPY options (fixture)", "cafe1234beef", "0123456789abcdef", "2024-03-25"):
        assert value in page
    assert "<dt>split</dt><dd><dl>" in page and "0, 1, 2" in page
    for run in runs:
        assert f"<td>{run.name.replace('<', '&lt;').replace('>', '&gt;')}</td>" in page
    assert EVIL not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert not re.search(r'(src|href)="(?!data:)', page)
    assert "url(" not in page and "@import" not in page
    assert re.search(r'<tr class="agent"><td>clstm-ppo</td>', page)
    assert page.count('<tr class="agent">') == 1
    assert "Showing the first" not in page
    agent = runs[0]
    assert format_metric("total_return", agent.metrics["total_return"]) in page
    assert format_metric("costs_paid", agent.metrics["costs_paid"]) in page


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("total_return", 0.1234, "12.34%"),
        ("max_drawdown", 0.05, "5.00%"),
        ("win_rate", 0.5, "50.00%"),
        ("annualised_volatility", 0.2, "20.00%"),
        ("sharpe", 1.23456, "1.23"),
        ("sharpe_ci_low", -0.5, "-0.50"),
        ("calmar", 3.0, "3.00"),
        ("costs_paid", 1234567.891, "$1,234,567.89"),
        ("final_value", -2500.0, "-$2,500.00"),
        ("trades", 1234.0, "1,234"),
        ("win_rate", math.nan, "–"),
        ("sharpe", None, "–"),
        ("sortino", math.inf, "∞"),
        ("sharpe", np.float32(0.5), "0.50"),
    ],
)
def test_format_metric(name: str, value: float | None, text: str) -> None:
    assert format_metric(name, value) == text


def test_no_actions_no_trades_no_agent(tmp_path: Path) -> None:
    runs = make_runs(agent_trades=0)
    runs[0].actions = None
    runs[1].name = "b&h $SPY_x^"  # '$' pairs would be parsed as matplotlib math and fail
    written = write_report(tmp_path / "a", runs, {}, metric_columns=["sharpe", "missing"])
    page = written["report.html"].read_text()
    assert (
        "b&amp;h $SPY_x^" in page
        and "closed no trades" in page
        and "<th>missing</th>" in page
        and "<th>win_rate" not in page
    )
    runs[0].actions = np.array([], dtype=np.int64)
    write_report(tmp_path / "b", runs, {})
    written = write_report(tmp_path / "c", runs[1:], {"note": "baselines only"})
    assert "No agent run" in written["report.html"].read_text()
    assert pd.read_csv(written["trades.csv"]).empty
    for out in ("a", "b", "c"):
        for png in (tmp_path / out).glob("*.png"):
            assert_png(png.read_bytes())


def test_long_trade_list_is_truncated(tmp_path: Path) -> None:
    runs = make_runs(agent_trades=TRADES_SHOWN + 30)
    written = write_report(tmp_path, runs[:2], PROVENANCE)
    page = written["report.html"].read_text()
    assert f"Showing the first {TRADES_SHOWN} of {TRADES_SHOWN + 30}" in page
    assert len(pd.read_csv(written["trades.csv"])) == TRADES_SHOWN + 30


def test_duplicate_or_misaligned_runs_are_refused(tmp_path: Path) -> None:
    runs = make_runs()
    with pytest.raises(ValueError, match="unique"):
        write_report(tmp_path, [runs[0], runs[0]], {})
    runs[1].values = runs[1].values[:-1]
    with pytest.raises(ValueError, match="dates"):
        write_report(tmp_path, runs, {})


# $CHROMIUM may name a browser binary outside PATH (e.g. an unpacked .deb).
CHROMIUM = (
    os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
)
# Runs after load: per image, whether it is complete, its natural size, and the share of opaque
# pixels once drawn on a canvas (matplotlib's PNGs are opaque; a broken stream leaves holes).
PROBE = """<pre id="probe"></pre><script>
window.addEventListener("load", () => {
  const probe = Array.from(document.images, (img) => {
    if (!img.naturalWidth) return [img.complete, 0, 0, 0];
    const canvas = document.createElement("canvas");
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const alpha = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    let opaque = 0;
    for (let i = 3; i < alpha.length; i += 4) opaque += alpha[i] === 255;
    return [img.complete, img.naturalWidth, img.naturalHeight, opaque / (alpha.length / 4)];
  });
  document.getElementById("probe").textContent = JSON.stringify(probe);
});
</script></body>"""


@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CLSTM_REQUIRE_CHROMIUM"),
    reason="no chromium (PATH or $CHROMIUM): headless render check skipped",
)
def test_chromium_renders_images(
    report: tuple[dict[str, Path], list[StrategyRun]], tmp_path: Path
) -> None:
    """A real browser decodes every embedded image (offline: the page needs no network)."""
    assert CHROMIUM, "CLSTM_REQUIRE_CHROMIUM is set but no chromium binary was found"
    written, _ = report
    page = written["report.html"].read_text()
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", PROBE))
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
    ]
    result = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", probed.as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    assert match and match.group(1), result.stderr[-2000:]
    sizes = json.loads(match.group(1))
    expected = [
        Image.open(written[n]).size
        for n in ("equity.png", "drawdown.png", "actions.png", "pnl_by_strategy.png")
    ]
    assert [(w, h) for _, w, h, _ in sizes] == expected
    assert all(complete and opaque == 1.0 for complete, _, _, opaque in sizes), sizes
