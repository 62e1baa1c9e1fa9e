"""The bench's arithmetic and its tables: medians per combination, the goal
ratios, and their rendering. Pure, unit-tested on hand-made rows
(tests/unit/test_sim_bench.py); :mod:`azure_sim.bench` runs the boots.
"""

from __future__ import annotations

import statistics
from typing import Any, Iterable, Optional, Sequence

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
