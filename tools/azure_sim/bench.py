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
unit-tested on hand-made rows (tests/unit/test_sim_bench.py); the medians,
ratios and tables are :mod:`azure_sim.benchstats`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

from azure_sim.benchstats import (  # noqa: F401 (bench's API: tests, vmbench)
    COLUMNS,
    GOAL_DHCPCD,
    GOAL_VS_BUILTIN_LOGIN,
    Combo,
    _fmt,
    aggregate,
    median,
    ratios,
    render_ratios,
    render_table,
)

DATASOURCES = ("plugin", "builtin")
CLOUD_INIT_VERSIONS = ("22.4.2", "25.1.4")
DHCP_CLIENTS = ("dhclient", "dhcpcd", "udhcpc")
# A default boot takes ~3 s of wall time. The scenario's own limit (240 s) would
# let one hung combination (e.g. an image whose DHCP client cloud-init cannot
# use, retried for minutes) dominate the whole bench; 30 s is 10x a normal boot.
DEFAULT_TIMEOUT_S = 30.0


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
