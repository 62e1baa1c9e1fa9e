"""``azure-sim bench``: plug-in vs built-in datasource, measured in one interleaved run.

Every combination of datasource (plugin, builtin) x cloud-init version x the
image's DHCP client boots the default scenario ``runs`` times. The boots are
interleaved: repetition 1 of every combination, then repetition 2 of every
combination, and so on, so that drift on the machine (page cache, CPU
frequency, other load) hits all combinations alike. One untimed warm-up boot
runs first.

A boot that does not end as the scenario expects (verdict not ok, a simulator
error, a time-out) is kept as a failed row and the run goes on: that is a
finding, not a reason to stop. Medians are taken over the successful boots of
a combination only; the failed ones are counted and their reasons printed once.

Everything except ``run_bench``'s calls to ``boot`` and ``main`` is pure and
unit-tested on hand-made rows (tests/unit/test_sim_bench.py).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

DATASOURCES = ("plugin", "builtin")
CLOUD_INIT_VERSIONS = ("22.4.2", "25.1.4")
DHCP_CLIENTS = ("dhclient", "dhcpcd", "udhcpc")
# A default boot takes ~3 s of wall time. The scenario's own limit (240 s) would
# let one hung combination (e.g. an image whose DHCP client cloud-init cannot
# use, retried for minutes) dominate the whole bench; 30 s is 10x a normal boot.
DEFAULT_TIMEOUT_S = 30.0

GOAL_VS_BUILTIN_LOGIN = 1.0  # plugin time to provisioned / builtin time to login
GOAL_DHCPCD = 0.5  # dhcpcd image: plugin / builtin time to provisioned

# (key in the aggregate, column title, format)
COLUMNS = (
    ("ready_s", "ready s", "{:.3f}"),
    ("login_s", "login s", "{:.3f}"),
    ("provisioned_s", "provisioned s", "{:.3f}"),
    ("init_local_s", "init-local s", "{:.3f}"),
    ("os_network_s", "os-net s", "{:.3f}"),
    ("cpu_s", "cpu s", "{:.2f}"),
    ("peak_rss_mb", "peak MB", "{:.1f}"),
    ("requests", "requests", "{:g}"),
    ("pps_ready_s", "assign->ready s", "{:.3f}"),  # pool VMs (--scenario with pps)
    ("pps_login_s", "assign->login s", "{:.3f}"),
)

Combo = tuple[str, str, str]  # (cloud_init, dhcp_client, datasource)


# --------------------------------------------------------------- pure parts


def combinations(datasources: Optional[Iterable[str]] = None,
                 versions: Optional[Iterable[str]] = None,
                 clients: Optional[Iterable[str]] = None) -> list[Combo]:
    """All (cloud_init, dhcp_client, datasource) combinations, in display order.

    ``None`` means all; duplicates (``--datasource plugin --datasource plugin``)
    are dropped. The plug-in and built-in rows of one version and client are
    neighbours, so the table reads as a comparison.
    """

    def pick(given: Optional[Iterable[str]], default: Sequence[str]) -> list[str]:
        if not given:
            return list(default)
        out: list[str] = []
        for item in given:
            if item not in out:
                out.append(item)
        return out

    return [(v, c, d) for v in pick(versions, CLOUD_INIT_VERSIONS)
            for c in pick(clients, DHCP_CLIENTS)
            for d in pick(datasources, DATASOURCES)]


def schedule(combos: Sequence[Combo], runs: int) -> list[tuple[int, Combo]]:
    """Round robin: (run, combo) for run 1 over every combo, then run 2, ..."""
    return [(run, combo) for run in range(1, runs + 1) for combo in combos]


def warmup_combo(combos: Sequence[Combo]) -> Combo:
    """The warm-up boot: built-in with dhclient if selected (known to work), else the first."""
    for combo in combos:
        if combo[2] == "builtin" and combo[1] == "dhclient":
            return combo
    return combos[0]


def login_time(ready_login: Optional[float], host_keys: Optional[float]) -> Optional[float]:
    """A user can log in once their key *and* a host key are in place."""
    if ready_login is None or host_keys is None:
        return None
    return max(ready_login, host_keys)


def failure_reason(report: dict[str, Any]) -> str:
    """One line saying why a boot is not ok (verdict problems plus the platform's reason)."""
    parts = list((report.get("verdict") or {}).get("problems") or [])
    failure = report.get("failure") or {}
    decoded = failure.get("decoded") or {}
    if decoded.get("reason"):
        parts.append(f"reported reason: {decoded['reason']}")
    errors = report.get("cloud_init_errors") or []
    if errors:
        parts.append(f"cloud-init error: {str(errors[0]).strip()[:200]}")
    recoverable = report.get("cloud_init_recoverable_errors") or {}
    for level, messages in recoverable.items() if isinstance(recoverable, dict) else ():
        if messages:
            parts.append(f"cloud-init {level}: {str(messages[0]).strip()[:200]}")
            break
    logged = next((w for w in report.get("warnings") or [] if "[ERROR]" in w), None)
    if logged:
        # "2026-01-01 00:00:00,000 - azure.py[ERROR]: text" -> "azure.py[ERROR]: text"
        parts.append(f"logged: {logged.split(' - ', 1)[-1].strip()[:200]}")
    for stage in report.get("stages") or []:
        if stage.get("stage") == "os-network" and stage.get("rc"):
            parts.append(f"the image's own DHCP client (os-network) exited {stage['rc']}")
            break
    return "; ".join(parts) or "verdict not ok"


def stage_seconds(report: dict[str, Any], stage: str) -> Optional[float]:
    """Seconds of ``stage`` in the first boot, or None."""
    for s in report.get("stages") or []:
        if s.get("stage") == stage and s.get("boot", 1) == 1:
            return s.get("seconds")
    return None


def row_from_report(report: dict[str, Any], *, run: int, combo: Combo) -> dict[str, Any]:
    """One raw bench row from a boot report."""
    cloud_init, client, datasource = combo
    ok = bool((report.get("verdict") or {}).get("ok"))
    return {
        "run": run, "cloud_init": cloud_init, "dhcp_client": client,
        "datasource": datasource, "ok": ok,
        "reason": None if ok else failure_reason(report),
        "time_to_ready_s": report.get("time_to_ready_s"),
        "time_to_login_s": report.get("time_to_login_s"),
        "time_to_host_keys_s": report.get("time_to_host_keys_s"),
        "login_s": login_time(report.get("time_to_login_s"),
                              report.get("time_to_host_keys_s")),
        "time_to_provisioned_s": report.get("time_to_provisioned_s"),
        "cpu_s": report.get("cpu_s"),
        "peak_rss_mb": report.get("peak_rss_mb"),
        # The datasource's own stage, and the OS network bring-up both pay.
        "init_local_s": stage_seconds(report, "init-local"),
        "os_network_s": stage_seconds(report, "os-network"),
        "requests": len(report.get("requests") or []),
        "pps_assign_to_ready_s": (report.get("pps") or {}).get("assignment_to_ready_s"),
        "pps_assign_to_login_s": (report.get("pps") or {}).get("assignment_to_login_s"),
        "request_log": [f"{r.get('method')} {r.get('path')} -> {r.get('status')}"
                        for r in report.get("requests") or []],
        "stages": report.get("stages") or [],
        "cloud_init_status": report.get("cloud_init_status"),
        "wall_s": report.get("wall_s"),
        "sim_error": report.get("sim_error"),
    }


def error_row(error: str, *, run: int, combo: Combo,
              wall_s: Optional[float] = None) -> dict[str, Any]:
    """A row for a boot that produced no report at all (the simulator raised)."""
    cloud_init, client, datasource = combo
    return {
        "run": run, "cloud_init": cloud_init, "dhcp_client": client,
        "datasource": datasource, "ok": False, "reason": f"simulator: {error}",
        "time_to_ready_s": None, "time_to_login_s": None, "time_to_host_keys_s": None,
        "login_s": None, "time_to_provisioned_s": None, "cpu_s": None,
        "peak_rss_mb": None, "requests": None, "request_log": [], "stages": [],
        "cloud_init_status": None, "wall_s": wall_s, "sim_error": error,
    }


def median(values: Iterable[Optional[float]]) -> Optional[float]:
    """Median of the values that are not None; None when there are none."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def aggregate(rows: Sequence[dict[str, Any]],
              combos: Optional[Sequence[Combo]] = None) -> list[dict[str, Any]]:
    """Per combination: medians over its ok rows, counts, and the distinct failure reasons.

    Combinations come in ``combos`` order (or first-seen order in ``rows``).
    """
    if combos is None:
        combos = []
        for r in rows:
            key = (r["cloud_init"], r["dhcp_client"], r["datasource"])
            if key not in combos:
                combos.append(key)
    out = []
    for combo in combos:
        mine = [r for r in rows
                if (r["cloud_init"], r["dhcp_client"], r["datasource"]) == combo]
        good = [r for r in mine if r["ok"]]
        reasons: list[str] = []
        for r in mine:
            if not r["ok"] and r.get("reason") and r["reason"] not in reasons:
                reasons.append(r["reason"])
        out.append({
            "cloud_init": combo[0], "dhcp_client": combo[1], "datasource": combo[2],
            "boots": len(mine), "ok": len(good), "failed": len(mine) - len(good),
            "reasons": reasons,
            "ready_s": median(r["time_to_ready_s"] for r in good),
            "login_s": median(r["login_s"] for r in good),
            "provisioned_s": median(r["time_to_provisioned_s"] for r in good),
            "cpu_s": median(r["cpu_s"] for r in good),
            "init_local_s": median(r.get("init_local_s") for r in good),
            "os_network_s": median(r.get("os_network_s") for r in good),
            "peak_rss_mb": median(r["peak_rss_mb"] for r in good),
            "requests": median(r["requests"] for r in good),
            "pps_ready_s": median(r.get("pps_assign_to_ready_s") for r in good),
            "pps_login_s": median(r.get("pps_assign_to_login_s") for r in good),
        })
    return out


def _find(summary: Sequence[dict[str, Any]], version: str, client: str,
          datasource: str) -> Optional[dict[str, Any]]:
    return next((s for s in summary if (s["cloud_init"], s["dhcp_client"],
                                        s["datasource"]) == (version, client, datasource)),
                None)


def _ratio(num: Optional[dict[str, Any]], num_key: str, den: Optional[dict[str, Any]],
           den_key: str) -> tuple[Optional[float], Optional[str]]:
    """(value, None) or (None, why it cannot be computed)."""
    for side, agg, key in (("plugin", num, num_key), ("builtin", den, den_key)):
        if agg is None:
            return None, f"{side} not measured"
        if agg.get(key) is None:
            return None, f"{side}: no successful boot"
    if not den[den_key]:  # type: ignore[index]
        return None, "builtin time is 0"
    return num[num_key] / den[den_key], None  # type: ignore[index]


def ratios(summary: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The goals, from one run's aggregates.

    For every cloud-init version and DHCP client measured with both datasources:
    plug-in time to provisioned / built-in time to login (goal <= 1.0). For the
    dhcpcd image also plug-in / built-in time to provisioned (goal <= 0.5).
    ``met`` is None when a side has no successful boot.
    """
    pairs: list[tuple[str, str]] = []
    for s in summary:
        if (s["cloud_init"], s["dhcp_client"]) not in pairs:
            pairs.append((s["cloud_init"], s["dhcp_client"]))
    out = []
    for version, client in pairs:
        plugin = _find(summary, version, client, "plugin")
        builtin = _find(summary, version, client, "builtin")
        if plugin is None and builtin is None:
            continue
        checks = [("plugin provisioned / builtin login", "provisioned_s", "login_s",
                   GOAL_VS_BUILTIN_LOGIN)]
        if client == "dhcpcd":
            checks.append(("plugin provisioned / builtin provisioned", "provisioned_s",
                           "provisioned_s", GOAL_DHCPCD))
            # The OS's own dhcpcd bring-up (ARP probe, start delay) is paid by
            # both; this is the part the datasource controls.
            checks.append(("plugin init-local / builtin init-local", "init_local_s",
                           "init_local_s", GOAL_DHCPCD))
        if any((s or {}).get("pps_ready_s") is not None for s in (plugin, builtin)):
            checks += [("plugin assign->ready / builtin assign->ready", "pps_ready_s",
                        "pps_ready_s", GOAL_VS_BUILTIN_LOGIN),
                       ("plugin assign->ready / builtin assign->login", "pps_ready_s",
                        "pps_login_s", GOAL_VS_BUILTIN_LOGIN)]
        for name, num_key, den_key, goal in checks:
            value, why = _ratio(plugin, num_key, builtin, den_key)
            out.append({"cloud_init": version, "dhcp_client": client, "ratio": name,
                        "value": value, "goal": goal, "why_missing": why,
                        "met": None if value is None else value <= goal})
    return out


def _fmt(value: Optional[float], spec: str) -> str:
    return "-" if value is None else spec.format(value)


def render_table(summary: Sequence[dict[str, Any]]) -> str:
    """The medians table, then each failing combination's reasons, once."""
    head = ["cloud-init", "dhcp", "datasource", *[c[1] for c in COLUMNS], "failed"]
    body = []
    for s in summary:
        body.append([s["cloud_init"], s["dhcp_client"], s["datasource"],
                     *[_fmt(s[key], spec) for key, _, spec in COLUMNS],
                     f"{s['failed']}/{s['boots']}"])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    left = 3  # text columns are left-aligned, numbers right-aligned

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i < left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    lines = [line(head), line(["-" * w for w in widths])]
    lines += [line(b) for b in body]
    failing = [s for s in summary if s["failed"]]
    if failing:
        lines.append("")
        lines.append("failed boots:")
        for s in failing:
            lines.append(f"  {s['cloud_init']} {s['dhcp_client']} {s['datasource']}: "
                         f"{s['failed']}/{s['boots']} failed")
            for reason in s["reasons"]:
                lines.append(f"    - {reason}")
    return "\n".join(lines)


def render_ratios(items: Sequence[dict[str, Any]]) -> str:
    """One line per ratio: value, goal, met / NOT met / n/a with the reason."""
    if not items:
        return "ratios: none (select both datasources to compare them)"
    lines = ["ratios (medians of this run):"]
    for r in items:
        if r["value"] is None:
            value, verdict = "n/a", f"n/a ({r['why_missing']})"
        else:
            value, verdict = f"{r['value']:.2f}", "met" if r["met"] else "NOT met"
        lines.append(f"  {r['cloud_init']:<7} {r['dhcp_client']:<8} {r['ratio']:<40} "
                     f"{value:>5}  goal <= {r['goal']:.1f}  {verdict}")
    return "\n".join(lines)


def describe(row: dict[str, Any]) -> str:
    """Short progress text for one finished boot."""
    if row["ok"]:
        return (f"ok, provisioned {_fmt(row['time_to_provisioned_s'], '{:.3f}')} s "
                f"(wall {_fmt(row['wall_s'], '{:.1f}')} s)")
    return f"FAILED ({row['reason']})"


# ------------------------------------------------------------ running boots


def run_bench(combos: Sequence[Combo], runs: int, *,
              boot_fn: Callable[..., dict[str, Any]],
              scenario_fn: Callable[[], dict[str, Any]],
              timeout: Optional[float] = DEFAULT_TIMEOUT_S,
              warmup: bool = True,
              progress: Callable[[str], None] = lambda _msg: None,
              error_types: tuple[type[BaseException], ...] = (Exception,),
              ) -> list[dict[str, Any]]:
    """Boot every combination ``runs`` times, interleaved; return the raw rows.

    ``boot_fn(scenario, cloud_init=, datasource=, timeout=)`` is
    ``azure_sim.boot.boot`` for real; a boot that raises one of
    ``error_types`` becomes a failed row and the run goes on.
    """

    def one(run: int, combo: Combo) -> dict[str, Any]:
        version, client, datasource = combo
        scenario = scenario_fn()
        scenario["dhcp_client"] = client
        started = time.monotonic()
        try:
            report = boot_fn(scenario, cloud_init=version, datasource=datasource,
                             timeout=timeout)
        except error_types as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            return error_row(f"{type(exc).__name__}: {first}", run=run, combo=combo,
                             wall_s=round(time.monotonic() - started, 3))
        return row_from_report(report, run=run, combo=combo)

    if warmup and combos:
        combo = warmup_combo(combos)
        progress(f"warm-up (untimed): {' '.join(combo)}")
        progress(f"  warm-up {describe(one(0, combo))}")
    plan = schedule(combos, runs)
    rows = []
    for i, (run, combo) in enumerate(plan, 1):
        row = one(run, combo)
        rows.append(row)
        progress(f"[{i:>{len(str(len(plan)))}}/{len(plan)}] run {run}/{runs} "
                 f"{' '.join(combo)}: {describe(row)}")
    return rows


def main(args: Any) -> int:
    """``azure-sim bench``: 0 when the bench ran (failed boots are results), 2 if it could not."""
    from azure_sim import deps
    from azure_sim.boot import SimError, boot, require_host
    from azure_sim.scenario import load_scenario

    runs = int(getattr(args, "runs", 3) or 0)
    if runs < 1:
        print("azure-sim bench: --runs must be at least 1", file=sys.stderr)
        return 2
    versions = getattr(args, "cloud_init", None) or sorted(deps.CLOUD_INIT)
    combos = combinations(getattr(args, "datasource", None), versions,
                          getattr(args, "dhcp_client", None))
    timeout = getattr(args, "timeout", None) or DEFAULT_TIMEOUT_S
    try:
        require_host()
    except SimError as exc:
        print(f"azure-sim bench: {exc}", file=sys.stderr)
        return 2

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    progress(f"azure-sim bench: {len(combos)} combinations x {runs} runs, interleaved, "
             f"+1 warm-up boot; {timeout:g} s limit per boot")
    started = time.monotonic()
    try:
        text = Path(args.scenario).read_text() if getattr(args, "scenario", None) else None
        rows = run_bench(combos, runs, boot_fn=boot, scenario_fn=lambda: load_scenario(text),
                         timeout=timeout, progress=progress,
                         error_types=(SimError, OSError, ValueError, RuntimeError))
    except KeyboardInterrupt:
        progress("azure-sim bench: interrupted; no results (every boot cleaned up after "
                 "itself)")
        return 130
    progress(f"azure-sim bench: done in {time.monotonic() - started:.0f} s")
    summary = aggregate(rows, combos)
    found = ratios(summary)
    print(f"medians over the successful boots of {runs} interleaved run(s); "
          f"times in seconds from the launch of 'cloud-init init --local'")
    print(render_table(summary))
    print()
    print(render_ratios(found))
    write_json(getattr(args, "json", None), progress, runs=runs, timeout_s=timeout, rows=rows,
               summary=summary, ratios=found)
    return 0


def write_json(path: Optional[str], progress: Callable[[str], None], **results: Any) -> None:
    """``--json FILE``: every raw row, the summary and the ratios of the run."""
    if path:
        Path(path).write_text(json.dumps(results, indent=1) + "\n")
        progress(f"azure-sim bench: raw rows written to {path}")
