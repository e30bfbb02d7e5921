"""The main table of docs/benchmarks.md, and its picture (docs/benchmarks.png), from the results.

Run by hand from the checkout's root after the other scripts (see docs/benchmarks.md)::

    python bench/plot.py [--output docs/benchmarks.png] [--table]

Reads ``build/bench/{daemon-hand,daemon-udp,standalone,standalone-udp*,http,memory}.json``
(whichever exist; ``standalone-udp*``: ``bench/standalone.py --cases udp --so-rcvbuf N``;
``bench/daemon.py --scenarios hand --name daemon-hand``, ``--scenarios udp --name
daemon-udp``), builds one row per target of issue [2.1] (the measured ratio, the target, hit or
miss), prints the rows as a markdown table, and draws them: one bar per row, the share of
its target reached (1.0 = the target exactly; right of the line is a hit), with the spread
of the rounds as error bars and
the ratio itself written beside. matplotlib is installed with pip on first use.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C


@dataclass
class Row:
    what: str
    figure: str  #: the measured figure(s), as text
    ratio: float | None  #: the measured ratio (or value) compared with the target
    low: float | None  #: spread of the rounds
    high: float | None
    target: float
    higher_is_better: bool = True
    unit: str = "x"

    @property
    def score(self) -> float | None:
        """Share of the target reached (>= 1: hit)."""
        if self.ratio is None:
            return None
        if self.higher_is_better:
            return self.ratio / self.target
        return self.target / self.ratio if self.ratio else float("inf")

    def score_of(self, value: float | None) -> float | None:
        if value is None:
            return None
        if self.higher_is_better:
            return value / self.target
        return self.target / value if value else float("inf")

    @property
    def verdict(self) -> str:
        return C.verdict(self.ratio, self.target, self.higher_is_better)

    @property
    def target_text(self) -> str:
        op = ">=" if self.higher_is_better else "<="
        return f"{op} {self.target:g}{self.unit}"


def _ratio_row(what: str, s: dict, target: float, figure: str) -> Row:
    r = s.get("ratio") or {}
    return Row(what, figure, r.get("median"), r.get("min"), r.get("max"), target)


def daemon_rows(data: dict) -> list[Row]:
    """Issue [2.1]'s targets inside the daemons, against the hand-written source (the
    ``hand`` scenario): parser native >= 0.9x, our parser's messages (hybrid, the default)
    >= 0.6x. Native stores the sender's address by default (``PEERIP``, ``PEERPORT``), which
    the hand-written source does not: both sides doing the same work are native with
    ``source-ip none`` against it, and native against the hand-written source storing the
    two pairs too (``handwritten-peer``, paired round by round)."""
    rows = []
    for entry in data["cases"].values():
        if entry.get("scenario") != "hand":
            continue
        summ = entry["summary"]
        fmt = "RFC 5424" if entry["rfc5424"] else "RFC 3164"
        where = f"{entry['daemon']}, TCP {fmt}, {entry['connections']} conn."
        ref = summ.get("handwritten", {}).get("rate", {}).get("median")
        for source, target, label in (
            ("syslogsrc-native", 0.9, "parser native"),
            ("syslogsrc-native-bare", 0.9, "native, source-ip none"),
            ("syslogsrc-hybrid", 0.6, "parser hybrid (default)"),
        ):
            if source in summ and ref:
                ours = summ[source]["rate"]["median"]
                rows.append(
                    _ratio_row(
                        f"{where}: {label} / hand-written",
                        summ[source],
                        target,
                        f"{C.krate(ours)} vs {C.krate(ref)} msg/s",
                    )
                )
        peer = summ.get("handwritten-peer")
        if peer and "syslogsrc-native" in summ:
            same = C.paired_ratios(summ["syslogsrc-native"]["rate"]["runs"], peer["rate"]["runs"])
            if same["median"] is not None:
                rows.append(
                    _ratio_row(
                        f"{where}: parser native / hand-written with the peer (same work)",
                        {"ratio": same},
                        0.9,
                        f"{C.krate(summ['syslogsrc-native']['rate']['median'])} vs "
                        f"{C.krate(peer['rate']['median'])} msg/s",
                    )
                )
    return rows


def daemon_extra_rows(data: dict) -> list[list[str]]:
    """UDP loss and TLS: no ratio target (UDP: lose no more than native), as table rows."""
    out = []
    for entry in data["cases"].values():
        summ = entry["summary"]
        if entry["transport"] == "udp":
            rate = "full rate" if entry["rate"] is None else f"{entry['rate'] // 1000}k msg/s"
            native = summ.get("native-tuned", {}).get("loss_pct", {}).get("median")
            for source in ("syslogsrc-native", "syslogsrc-hybrid", "syslogsrc"):
                if source not in summ or native is None:
                    continue
                ours = summ[source]["loss_pct"]["median"]
                out.append(
                    [
                        f"{entry['daemon']}, UDP {rate}: {source} loss vs native's",
                        f"{ours:.1f}% vs {native:.1f}%"
                        f" ({C.krate(summ[source]['rate']['median'])} vs "
                        f"{C.krate(summ['native-tuned']['rate']['median'])} msg/s stored)",
                        "no more than native" if entry["rate"] else "(no target)",
                        ("hit" if ours <= native else f"miss by {ours - native:.1f} points")
                        if entry["rate"]
                        else "",
                    ]
                )
        elif entry["transport"] == "tls":
            for source in ("syslogsrc-native", "syslogsrc"):
                if source in summ and "ratio" in summ[source]:
                    out.append(
                        [
                            f"{entry['daemon']}, TLS: {source} / native tuned",
                            f"{C.spread(summ[source]['ratio'])}x"
                            f" ({C.krate(summ[source]['rate']['median'])} msg/s)",
                            "(no target)",
                            "",
                        ]
                    )
    return out


def standalone_rows(
    data: dict, tcp: bool = True, udp: bool = True
) -> tuple[list[Row], list[list[str]]]:
    """Issue [2.1]'s standalone targets: twistd TCP >= 1.0x the plain receiver (goal 1.5x);
    UDP: nothing lost at 20k msg/s, no more than the plain receiver at 50k msg/s."""
    rows, extra = [], []
    cases = data["cases"]
    buffer = data.get("params", {}).get("so_rcvbuf")
    mib = f", so-rcvbuf {buffer / (1 << 20):g} MiB" if buffer else ""
    for name in ("tcp rfc3164", "tcp rfc5424") if tcp else ():
        if name in cases and "syslogsrc" in cases[name]["summary"]:
            s = cases[name]["summary"]
            rows.append(
                _ratio_row(
                    f"standalone {name.upper().replace('RFC', 'RFC ')}: twistd syslogsrc / plain"
                    " LineReceiver",
                    s["syslogsrc"],
                    1.0,
                    f"{C.krate(s['syslogsrc']['rate']['median'])} vs "
                    f"{C.krate(s['plain']['rate']['median'])} msg/s",
                )
            )
    for name, reference in (("udp 20k msg/s", None), ("udp 50k msg/s", "plain")) if udp else ():
        s = cases.get(name, {}).get("summary", {})
        if "syslogsrc" not in s:
            continue
        who = ["syslogsrc"] + ([reference] if reference in s else [])
        losses = ", ".join(
            f"{w} {s[w]['loss_pct']['median']:.2f}% ({s[w]['loss_pct']['min']:.2f}-"
            f"{s[w]['loss_pct']['max']:.2f})"
            for w in who
        )
        ours = s["syslogsrc"]["loss_pct"]["median"]
        if reference is None:
            target, hit = "0 lost (syslogsrc)", s["syslogsrc"]["loss_pct"]["max"] == 0
        else:
            theirs = s[reference]["loss_pct"]["median"] if reference in s else 0.0
            target, hit = f"no more than {reference}", ours <= theirs
        extra.append(
            [
                f"standalone UDP {name.split()[1]} msg/s{mib}: loss",
                losses,
                target,
                "hit" if hit else f"miss: {ours:.2f}% lost (median)",
            ]
        )
    return rows, extra


def http_rows(data: dict) -> list[Row]:
    s = data["summary"]
    return [
        _ratio_row(
            "HTTP NDJSON 1000-line bodies: syslogsrc / plain twisted.web",
            s["syslogsrc"],
            1.0,
            f"{C.krate(s['syslogsrc']['rate']['median'])} vs "
            f"{C.krate(s['plain']['rate']['median'])} lines/s",
        )
    ]


def memory_rows(data: dict) -> list[Row]:
    s = data["summary"]["syslogsrc"]["bytes_per_idle_connection"]
    plain = data["summary"]["plain"]["bytes_per_idle_connection"]["median"]
    return [
        Row(
            "RSS per idle TCP connection (twistd syslogsrc)",
            f"{s['median']:.0f} B (plain Twisted {plain:.0f} B)",
            s["median"],
            s["min"],
            s["max"],
            2048,
            higher_is_better=False,
            unit=" B",
        )
    ]


def pooled(names: list[str]) -> dict | None:
    """The ``hand`` results of several runs of bench/daemon.py on the same code as one: each
    case's rounds put together (a round's sources stay paired), medians and ratios
    recomputed. Cases missing from a run are left out."""
    runs = [d for name in names if (d := C.load_results(name))]
    if len(runs) <= 1:
        return runs[0] if runs else None
    cases = {}
    for key, first in runs[0]["cases"].items():
        if not all(key in d["cases"] for d in runs):
            continue
        entry = dict(first)
        ref = first.get("reference")
        summary = {}
        for source in first["summary"]:
            if not all(source in d["cases"][key]["summary"] for d in runs):
                continue
            rates = [r for d in runs for r in d["cases"][key]["summary"][source]["rate"]["runs"]]
            summary[source] = {"rate": C.summary(rates)}
        if ref in summary:
            for s in summary.values():
                s["ratio"] = C.paired_ratios(s["rate"]["runs"], summary[ref]["rate"]["runs"])
        entry["summary"] = summary
        cases[key] = entry
    return {**runs[-1], "cases": cases}


def collect(hand: list[str]) -> tuple[list[Row], list[list[str]], dict[str, object]]:
    rows: list[Row] = []
    extra: list[list[str]] = []
    machine: dict[str, object] = {}
    if d := pooled(hand):  # issue [2.1]'s runs (bench/daemon.py --scenarios hand --name)
        rows += daemon_rows(d)
        machine = d["machine"]
    if d := C.load_results("daemon-udp"):  # bench/daemon.py --scenarios udp --name daemon-udp
        extra += daemon_extra_rows(d)
        machine = machine or d["machine"]
    # UDP measured on its own (bench/standalone.py --cases udp... --name standalone-udp[-16m])
    # replaces the UDP cases of the full run
    udp_files = sorted(C.RESULTS.glob("standalone-udp*.json"))
    udp_runs = sorted(
        (d for f in udp_files if (d := C.load_results(f.stem))),
        key=lambda d: d.get("params", {}).get("so_rcvbuf", 0),
    )
    if d := C.load_results("standalone"):
        r, e = standalone_rows(d, udp=not udp_runs)
        rows += r
        extra += e
        machine = machine or d["machine"]
    for d in udp_runs:
        extra += standalone_rows(d, tcp=False)[1]
    if d := C.load_results("http"):
        rows += http_rows(d)
        machine = machine or d["machine"]
    if d := C.load_results("memory"):
        rows += memory_rows(d)
        machine = machine or d["machine"]
    return rows, extra, machine


def table(rows: list[Row], extra: list[list[str]]) -> str:
    body = []
    for r in rows:
        if r.ratio is None:
            measured = "n/a"
        elif r.unit == "x":
            measured = f"{r.ratio:.2f}x ({r.low:.2f}-{r.high:.2f})"
        else:
            measured = f"{r.ratio:.0f}{r.unit} ({r.low:.0f}-{r.high:.0f})"
        body.append([r.what, f"{measured}; {r.figure}", r.target_text, r.verdict])
    return C.markdown_table(["target", "measured (spread)", "target", "result"], body + extra)


def ensure_matplotlib():
    try:
        import matplotlib
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "matplotlib"], check=True)
        import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw(rows: list[Row], machine: dict[str, object], output: Path) -> None:
    plt = ensure_matplotlib()
    rows = [r for r in rows if r.score is not None]
    fig, ax = plt.subplots(figsize=(11, 0.42 * len(rows) + 1.8))
    ys = list(range(len(rows)))[::-1]
    scores = [r.score for r in rows]
    lows = [r.score_of(r.low if r.higher_is_better else r.high) for r in rows]
    highs = [r.score_of(r.high if r.higher_is_better else r.low) for r in rows]
    colors = ["#2e7d32" if s >= 1 else "#c62828" for s in scores]
    ax.barh(ys, scores, color=colors, alpha=0.85, height=0.6)
    ax.errorbar(
        scores,
        ys,
        xerr=[
            [s - lo for s, lo in zip(scores, lows, strict=True)],
            [hi - s for s, hi in zip(scores, highs, strict=True)],
        ],
        fmt="none",
        ecolor="black",
        capsize=3,
        linewidth=1,
    )
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1)
    for y, r, s, hi in zip(ys, rows, scores, highs, strict=True):
        label = f"{r.ratio:.2f}x" if r.unit == "x" else f"{r.ratio:.0f}{r.unit}"
        ax.text(max(s, hi) * 1.06, y, f"{label} (target {r.target_text})", va="center", fontsize=8)
    ax.set_yticks(ys)
    ax.set_yticklabels([r.what for r in rows], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(0.05, max(4.0, max(highs) * 3))
    ax.set_xlabel("share of the target reached (log scale; right of the dashed line = target met)")
    ax.set_title(
        "syslogsrc benchmarks, issue [2.1]: median of the rounds, bars = min-max\n"
        f"{machine.get('cpu', '')}, {machine.get('cores', '')} cores, {machine.get('date', '')}",
        fontsize=10,
    )
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--output", type=Path, default=C.CHECKOUT / "docs" / "benchmarks.png")
    ap.add_argument("--table", action="store_true", help="only print the table")
    ap.add_argument(
        "--hand",
        default="daemon-hand",
        help="results of bench/daemon.py --scenarios hand: NAME[,NAME...], the rounds of"
        " several runs on the same code pooled",
    )
    args = ap.parse_args(argv)
    rows, extra, machine = collect([n for n in args.hand.split(",") if n])
    if not rows and not extra:
        print("no results in build/bench/: run the other bench scripts first", file=sys.stderr)
        return 1
    print(table(rows, extra))
    if not args.table:
        draw(rows, machine, args.output)
        print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
