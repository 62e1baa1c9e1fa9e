"""``azure-sim bench --vm``: plug-in vs built-in datasource on the same VM image.

Each run boots the default scenario under QEMU (``vm.boot``) once with
cloud-init's own Azure datasource and once with the plug-in, interleaved
(run 1 of every combination, then run 2, ...), after one untimed warm-up
boot. Both boot the same root image, the same platform and the same
scenario; only the kernel command line differs (``vm.BUILTIN_CMDLINE``).

Measured per boot: Ready after init-local started (the platform's receipt of
the Ready POST minus systemd's start of cloud-init-local.service), the first
real SSH login (``vmssh``: seconds from QEMU start, and after init-local), and
whether the host key the SSH client saw first is still the VM's at the end of
the boot. Medians over the successful boots; the goals of issue 10 as ratios.

Everything but ``main`` and ``run_bench``'s boots is pure and tested without QEMU
(tests/vm/test_vm_pure.py).
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Optional, Sequence

from azure_sim.bench import _fmt, failure_reason, median, schedule, write_json

DATASOURCES = ("builtin", "plugin")
DEFAULT_TIMEOUT_S = 400.0
GOAL_READY = 1.2  # plugin Ready / builtin Ready (after init-local start)
GOAL_LOGIN = 1.0  # plugin first SSH login / builtin first SSH login (from QEMU start)
EXPECTED_MODULE = {"plugin": "cloudinit_azure.sources.DataSourceAzure",
                   "builtin": "cloudinit.sources.DataSourceAzure"}

COLUMNS = (
    ("init_local_s", "init-local at", "{:.1f}"),
    ("ready_s", "ready s", "{:.2f}"),
    ("login_s", "ssh login s", "{:.2f}"),
    ("boot_to_login_s", "login at", "{:.1f}"),
    ("cloud_final_s", "final at", "{:.1f}"),
    ("cpu_s", "cpu s", "{:.1f}"),
)

Combo = tuple[str, str]  # (cloud_init, datasource)


def row_from_report(report: dict[str, Any], *, run: int, combo: Combo) -> dict[str, Any]:
    """One bench row from a VM boot report."""
    vm = report.get("vm") or {}
    ok = bool((report.get("verdict") or {}).get("ok"))
    reasons = [] if ok else [failure_reason(report)]
    module = vm.get("datasource_module")
    if module != EXPECTED_MODULE[combo[1]]:
        ok = False
        reasons.append(f"datasource ran: {module}, expected {EXPECTED_MODULE[combo[1]]}")
    if vm.get("boot_to_ssh_login_s") is None:
        ok = False
        reasons.append("no SSH login: " + str((vm.get("ssh") or {}).get("last_error")))
    return {
        "run": run, "cloud_init": combo[0], "datasource": combo[1], "ok": ok,
        "reason": "; ".join(reasons) or None,
        "ready_s": report.get("time_to_ready_s"),
        "login_s": vm.get("ssh_login_after_init_local_s"),
        "boot_to_ready_s": vm.get("boot_to_ready_s"),
        "boot_to_login_s": vm.get("boot_to_ssh_login_s"),
        "init_local_s": vm.get("boot_to_init_local_s"),
        "cloud_final_s": vm.get("boot_to_cloud_final_s"),
        "host_key_changed": vm.get("host_key_changed"),
        "cpu_s": report.get("cpu_s"),
        "datasource_module": module,
        "stages": report.get("stages") or [],
        "wall_s": report.get("wall_s"),
    }


def error_row(error: str, *, run: int, combo: Combo) -> dict[str, Any]:
    row = {key: None for key in ("ready_s", "login_s", "boot_to_ready_s", "boot_to_login_s",
                                 "init_local_s", "cloud_final_s", "host_key_changed",
                                 "cpu_s", "datasource_module", "wall_s")}
    row.update({"run": run, "cloud_init": combo[0], "datasource": combo[1], "ok": False,
                "reason": f"simulator: {error}", "stages": []})
    return row


def aggregate(rows: Sequence[dict[str, Any]], combos: Sequence[Combo]) -> list[dict[str, Any]]:
    """Medians per combination over its ok rows; host key changes counted over all."""
    out = []
    for combo in combos:
        mine = [r for r in rows if (r["cloud_init"], r["datasource"]) == combo]
        good = [r for r in mine if r["ok"]]
        reasons: list[str] = []
        for r in mine:
            if r.get("reason") and r["reason"] not in reasons:
                reasons.append(r["reason"])
        agg = {"cloud_init": combo[0], "datasource": combo[1], "boots": len(mine),
               "ok": len(good), "failed": len(mine) - len(good), "reasons": reasons,
               "host_key_changed": sum(1 for r in mine if r["host_key_changed"]),
               "host_key_unknown": sum(1 for r in mine if r["host_key_changed"] is None)}
        for key, _, _ in COLUMNS:
            agg[key] = median(r[key] for r in good)
        agg["boot_to_ready_s"] = median(r["boot_to_ready_s"] for r in good)
        out.append(agg)
    return out


def ratios(summary: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 10's VM goals per cloud-init version, from one run's medians."""
    out = []
    for version in dict.fromkeys(s["cloud_init"] for s in summary):
        side = {s["datasource"]: s for s in summary if s["cloud_init"] == version}
        plugin, builtin = side.get("plugin"), side.get("builtin")
        if not plugin or not builtin:
            continue
        for name, key, goal in (("plugin Ready / builtin Ready (after init-local)",
                                 "ready_s", GOAL_READY),
                                ("plugin first SSH login / builtin's (from QEMU start)",
                                 "boot_to_login_s", GOAL_LOGIN)):
            num, den = plugin.get(key), builtin.get(key)
            value = num / den if num is not None and den else None
            out.append({"cloud_init": version, "ratio": name, "value": value, "goal": goal,
                        "met": None if value is None else value <= goal})
        changed = plugin["host_key_changed"]
        out.append({"cloud_init": version, "ratio": "plugin boots whose host key changed",
                    "value": float(changed), "goal": 0.0,
                    "met": None if plugin["host_key_unknown"] == plugin["boots"]
                    else changed == 0})
    return out


def render(summary: Sequence[dict[str, Any]], found: Sequence[dict[str, Any]]) -> str:
    head = ["cloud-init", "datasource", *[c[1] for c in COLUMNS], "key changed", "failed"]
    body = [[s["cloud_init"], s["datasource"],
             *[_fmt(s[key], spec) for key, _, spec in COLUMNS],
             f"{s['host_key_changed']}/{s['boots']}", f"{s['failed']}/{s['boots']}"]
            for s in summary]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
             for cells in [head, ["-" * w for w in widths], *body]]
    for s in summary:
        for reason in s["reasons"]:
            lines.append(f"  {s['cloud_init']} {s['datasource']}: {reason}")
    lines += ["", "ratios (medians of this run):"]
    for r in found:
        verdict = "n/a" if r["met"] is None else ("met" if r["met"] else "NOT met")
        lines.append(f"  {r['cloud_init']:<7} {r['ratio']:<54} {_fmt(r['value'], '{:.2f}'):>5}"
                     f"  goal <= {r['goal']:.1f}  {verdict}")
    return "\n".join(lines)


def run_bench(combos: Sequence[Combo], runs: int, *, boot_fn: Callable[..., dict[str, Any]],
              scenario_fn: Callable[[], dict[str, Any]], timeout: float,
              progress: Callable[[str], None] = lambda _m: None, warmup: bool = True,
              error_types: tuple[type[BaseException], ...] = (Exception,),
              ) -> list[dict[str, Any]]:
    """Boot every combination ``runs`` times, interleaved, after one warm-up boot."""

    def one(run: int, combo: Combo) -> dict[str, Any]:
        try:
            report = boot_fn(scenario_fn(), cloud_init=combo[0], datasource=combo[1],
                             timeout=timeout)
        except error_types as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            return error_row(f"{type(exc).__name__}: {first}", run=run, combo=combo)
        return row_from_report(report, run=run, combo=combo)

    def describe(row: dict[str, Any]) -> str:
        if not row["ok"]:
            return f"FAILED ({row['reason']})"
        return (f"ok, Ready {_fmt(row['ready_s'], '{:.2f}')} s after init-local, "
                f"SSH login at {_fmt(row['boot_to_login_s'], '{:.1f}')} s, host key "
                f"{'CHANGED' if row['host_key_changed'] else 'unchanged'}")

    if warmup and combos:
        progress(f"warm-up (untimed): {' '.join(combos[0])}: {describe(one(0, combos[0]))}")
    rows = []
    plan = schedule(combos, runs)
    for i, (run, combo) in enumerate(plan, 1):
        rows.append(one(run, combo))
        progress(f"[{i}/{len(plan)}] run {run}/{runs} {' '.join(combo)}: "
                 f"{describe(rows[-1])}")
    return rows


def main(args: Any, boot_fn: Optional[Callable[..., dict[str, Any]]] = None) -> int:
    """``azure-sim bench --vm``: 0 when the bench ran (failed boots are results)."""
    from azure_sim import vm
    from azure_sim.boot import SimError
    from azure_sim.scenario import load_scenario

    runs = int(getattr(args, "runs", 3) or 0)
    if runs < 1:
        print("azure-sim bench: --runs must be at least 1", file=sys.stderr)
        return 2
    reason = vm.missing_requirement()
    if reason and boot_fn is None:
        print(f"azure-sim bench --vm: {reason}", file=sys.stderr)
        return 2
    versions = list(dict.fromkeys(getattr(args, "cloud_init", None) or ["22.4.2"]))
    datasources = list(dict.fromkeys(getattr(args, "datasource", None) or DATASOURCES))
    combos = [(v, d) for v in versions for d in datasources]
    timeout = float(getattr(args, "timeout", None) or DEFAULT_TIMEOUT_S)
    if timeout < 120:
        timeout = DEFAULT_TIMEOUT_S  # the sandbox bench's default would kill every VM

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    progress(f"azure-sim bench --vm: {len(combos)} combinations x {runs} runs, interleaved, "
             f"+1 warm-up boot; {timeout:g} s limit per boot; accel {vm.accel()}")
    started = time.monotonic()
    try:
        if boot_fn is None:
            deb = getattr(args, "deb", None) or str(vm.default_deb())
            progress(f"azure-sim bench --vm: every boot installs {deb}")

            def boot_fn(scenario: dict[str, Any], **kw: Any) -> dict[str, Any]:
                return vm.boot(scenario, deb=deb, **kw)

        rows = run_bench(combos, runs, boot_fn=boot_fn, scenario_fn=load_scenario,
                         timeout=timeout, progress=progress,
                         error_types=(SimError, OSError, ValueError, RuntimeError))
    except KeyboardInterrupt:
        progress("azure-sim bench --vm: interrupted; every boot cleaned up after itself")
        return 130
    progress(f"azure-sim bench --vm: done in {time.monotonic() - started:.0f} s")
    summary = aggregate(rows, combos)
    found = ratios(summary)
    print(f"VM boots under QEMU ({vm.accel()}), medians over the successful boots of {runs} "
          "interleaved run(s); 'ready s' and 'ssh login s' count from systemd's start of "
          "cloud-init-local.service, 'at' columns from QEMU start")
    print(render(summary, found))
    write_json(getattr(args, "json", None), progress, runs=runs, timeout_s=timeout, rows=rows,
               summary=summary, ratios=found)
    return 0
