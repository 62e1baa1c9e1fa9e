"""Turn what the sandbox and the platform saw into the boot report (pure).

The report is a plain dict, written as JSON with ``--report`` and rendered as
a short human summary. Times are seconds from boot start (the moment
``cloud-init init --local`` was launched).
"""

from __future__ import annotations

import json
from typing import Any, Optional

from azure_sim import pps


def parse_leases(text: str) -> list[dict[str, str]]:
    """dnsmasq lease lines: ``expiry mac ip hostname client-id``."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4:
            out.append({"mac": parts[1], "ip": parts[2],
                        "hostname": "" if parts[3] == "*" else parts[3]})
    return out


def decode_description(text: Optional[str]) -> Optional[dict[str, str]]:
    """Decode an encoded provisioning report (``k=v|k=v``), if it is one."""
    if not text or "result=" not in text:
        return None
    import csv

    row = next(csv.reader([text], delimiter="|", quotechar="'"), [])
    out = {}
    for item in row:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def _link_event(line: str, t0: Optional[float]) -> dict[str, Any]:
    """One ``ip -ts -o monitor link`` line -> {t, name, down, line}."""
    from datetime import datetime

    t = None
    if line.startswith("["):
        stamp, _, line = line[1:].partition("] ")
        try:
            t = _rel(datetime.fromisoformat(stamp).timestamp(), t0)
        except ValueError:
            t = None
    fields = line.split(":", 2)
    name = fields[1].strip().split("@")[0] if len(fields) > 1 else ""
    down = "state DOWN" in line or "NO-CARRIER" in line or "LOWERLAYERDOWN" in line
    return {"t": t, "name": name, "down": down, "line": line.strip()}


def _rel(t: Optional[float], t0: Optional[float]) -> Optional[float]:
    if t is None or t0 is None:
        return None
    return round(t - t0, 3)


def _status(raw: dict[str, Any]) -> dict[str, Any]:
    try:
        data = json.loads(raw.get("status_raw") or "")
    except ValueError:
        return {"status": "unknown", "errors": [], "raw": raw.get("status_raw")}
    errors = list(data.get("errors") or [])
    recoverable = data.get("recoverable_errors") or {}
    return {"status": data.get("extended_status") or data.get("status"),
            "errors": errors, "recoverable_errors": recoverable,
            "detail": data.get("detail")}


def host_keys_changed(history: Optional[list], t_ready_abs: Optional[float]) -> Optional[bool]:
    """Did the host keys a client could see at Ready change before the end of the boot?"""
    if not history or t_ready_abs is None:
        return None
    at_ready = next((keys for t, keys in reversed(history) if t <= t_ready_abs), {})
    return at_ready != history[-1][1]


def kvp_diagnostics(records: list[dict[str, str]]) -> list[dict[str, Any]]:
    """The plug-in's per-phase KVP records: ``<phase>: <outcome> in <s> s (<detail>)``."""
    import re

    out = []
    for rec in records:
        parts = rec["key"].split("|")
        if parts[0] != "CLOUD_INIT_AZURE" or len(parts) < 2:
            continue
        try:
            msg = json.loads(rec["value"]).get("msg", "")
        except ValueError:
            msg = rec["value"]
        m = re.match(r"[^:]*: (\S+) in ([0-9.]+) s(?: \((.*)\))?$", msg, re.DOTALL)
        out.append({"phase": parts[1], "outcome": m.group(1) if m else None,
                    "seconds": float(m.group(2)) if m else None,
                    "detail": (m.group(3) or "") if m else msg})
    return out


def build_report(*, scenario: dict[str, Any], raw: dict[str, Any],
                 journal: list[dict[str, Any]], leases: str, cloud_init: str,
                 datasource: str, wall_s: float) -> dict[str, Any]:
    t0 = raw.get("t0")
    health = []
    for entry in journal:
        if entry.get("endpoint") == "health" and entry.get("health"):
            h = entry["health"]
            health.append({"t": _rel(entry["t"], t0), "state": h.get("state"),
                           "substatus": h.get("substatus"),
                           "description": h.get("description"),
                           "decoded": decode_description(h.get("description"))})
    ready_reports = [h for h in health if h["state"] == "Ready"]
    failures = [h for h in health if h["state"] != "Ready"]
    kvp = raw.get("kvp") or []
    kvp_failure = next((decode_description(r["value"]) for r in kvp
                        if r["key"] == "PROVISIONING_REPORT"
                        and "result=error" in r["value"]), None)
    failure = None
    if failures:
        failure = failures[0]
    elif kvp_failure:
        failure = {"t": None, "state": None, "substatus": None,
                   "description": None, "decoded": kvp_failure}
    watch = raw.get("watch") or {}
    t_ready = ready_reports[0]["t"] if ready_reports else None
    t_login = _rel(watch.get("authorized_keys"), t0)
    t_hostkeys = _rel(watch.get("host_keys"), t0)
    t_prov = None
    if t_ready is not None and t_login is not None:
        t_prov = max(t_ready, t_login, t_hostkeys or 0)
    stages = raw.get("stages") or []
    stage_rows = [{"boot": s["boot"], "stage": s["stage"], "start": _rel(s["start"], t0),
                   "seconds": round(s["end"] - s["start"], 3), "rc": s["rc"],
                   "cpu_s": round(s["cpu_s"], 3),
                   "maxrss_mb": round(s["maxrss_kb"] / 1024, 1)} for s in stages]
    mounts = raw.get("mounts") or []
    disk_dev = raw.get("resource_disk_device")
    disk = next((m for m in mounts if disk_dev and disk_dev in m["source"]), None)
    if disk is None:
        disk = next((m for m in mounts if m["mountpoint"] == "/mnt"), None)
    status = _status(raw)
    files = raw.get("files") or {}
    report: dict[str, Any] = {
        "scenario": scenario.get("name"),
        "cloud_init_version": cloud_init,
        "datasource": datasource,
        "ready": bool(ready_reports),
        "ready_count": len(ready_reports),
        "health_reports": health,
        "failure": failure,
        "time_to_ready_s": t_ready,
        "time_to_login_s": t_login,
        "time_to_host_keys_s": t_hostkeys,
        "time_to_provisioned_s": t_prov,
        "time_to_password_auth_s": _rel(watch.get("password_auth"), t0),
        "host_keys_changed": host_keys_changed(
            raw.get("host_key_history"), None if t_ready is None or t0 is None
            else t0 + t_ready),
        "requests": [{"t": _rel(e["t"], t0), "endpoint": e["endpoint"],
                      "method": e["method"], "path": e["path"], "status": e["status"]}
                     for e in journal if "method" in e],
        "user": raw.get("user") or {},
        "hostname": raw.get("hostname"),
        "etc_hostname": raw.get("etc_hostname"),
        "custom_data_applied": files.get("/var/tmp/custom-data-applied") is not None,
        "pps": pps.report_block(scenario, journal, t0, watch.get("authorized_keys")),
        "placeholder_user_exists": raw.get("placeholder_user_exists"),
        "placeholder_custom_data_applied": files.get(pps.PLACEHOLDER_FILE) is not None,
        "resource_disk": {"fstype": disk["fstype"] if disk else None,
                          "mountpoint": disk["mountpoint"] if disk else None},
        "fstab": raw.get("fstab"),
        "kvp": kvp,
        "kvp_diagnostics": kvp_diagnostics(kvp),
        "dhcp_leases": parse_leases(leases),
        "cloud_init_status": status["status"],
        "cloud_init_errors": status["errors"],
        "cloud_init_recoverable_errors": status.get("recoverable_errors"),
        "instance_id": raw.get("instance_id"),
        "stages": stage_rows,
        # 24.3+ does the stages' work in cloud-init-main.service (VM boots)
        "cpu_s": round(sum(s["cpu_s"] for s in stages) + (raw.get("cpu_main_s") or 0), 3),
        "peak_rss_mb": round(max((s["maxrss_kb"] for s in stages), default=0) / 1024, 1),
        "waagent_ovf": raw.get("waagent_ovf"),
        "secret_leaks": raw.get("secret_leaks") or [],
        "certificate_keys": raw.get("certificate_keys") or {},
        "routes": raw.get("routes") or [],
        "links": raw.get("links") or [],
        "link_events": [_link_event(e, t0) for e in raw.get("link_events") or []],
        "ejected": raw.get("ejected") or [],
        "host_global_calls": raw.get("host_global_calls") or [],
        "services": raw.get("services") or [],
        "warnings": raw.get("warnings") or [],
        "system": raw.get("system") or {},  # what azure-sim diff compares
        "sim_error": raw.get("error"),
        "wall_s": round(wall_s, 3),
    }
    if raw.get("power_cut"):
        report["power_cut"] = raw["power_cut"]
    if raw.get("error"):
        report["cloud_init_log_tail"] = raw.get("cloud_init_log_tail")
        report["traceback"] = raw.get("traceback")
    report["verdict"] = verdict(report, scenario.get("expect", "ready"))
    return report


def verdict(report: dict[str, Any], expect: str) -> dict[str, Any]:
    """Did the boot end as the scenario expects? Returns ok + the reasons if not."""
    problems = []
    if report.get("secret_leaks"):
        problems.append(f"secrets readable by others in: {', '.join(report['secret_leaks'])}")
    if report.get("sim_error"):
        problems.append(f"simulator: {report['sim_error']}")
    pool = report.get("pps")
    if pool:
        problems += pps.problems(report, expect)
    if expect == "ready":
        if not report["ready"]:
            problems.append("no Ready health report")
        if report["failure"]:
            problems.append("a failure was reported")
        if report["ready_count"] > (2 if pool else 1):
            problems.append(f"Ready reported {report['ready_count']} times")
        if report["cloud_init_status"] != "done":
            problems.append(f"cloud-init status is {report['cloud_init_status']}")
    elif expect == "silence":
        # Off Azure: nothing may be sent to the platform at all.
        if report["requests"]:
            problems.append(f"{len(report['requests'])} requests reached the platform")
        if report["kvp"]:
            problems.append("KVP records were written")
    else:
        if not report["failure"]:
            problems.append("no failure was reported")
        if report["ready"] and not pool:
            problems.append("Ready was reported")
    cut = report.get("power_cut")
    if cut:
        # After a power cut: one story for the platform, and a sound machine.
        failures = [h for h in report["health_reports"] if h["state"] != "Ready"]
        if expect == "failure" and len(failures) > 1:
            problems.append(f"the failure was reported {len(failures)} times")
        problems += [f"after power cut {cut['at']}: {p}" for p in cut["problems"]]
    return {"expected": expect, "ok": not problems, "problems": problems}


def summary(report: dict[str, Any]) -> str:
    """A human-readable timeline and verdict."""
    lines = [f"azure-sim: scenario '{report['scenario']}', cloud-init "
             f"{report['cloud_init_version']}, datasource {report['datasource']}"]
    events = [(s["start"], f"stage {s['stage']} (boot {s['boot']}) "
               f"{s['seconds']:.2f} s, rc {s['rc']}") for s in report["stages"]]
    events += [(r["t"], f"  {r['method']} {r['path']} -> {r['status']}")
               for r in report["requests"]]
    for h in report["health_reports"]:
        text = f"  health: {h['state']}"
        if h["substatus"]:
            text += f" {h['substatus']}"
        if h["decoded"] and h["decoded"].get("reason"):
            text += f" ({h['decoded']['reason']})"
        events.append((h["t"], text))
    if report["time_to_login_s"] is not None:
        events.append((report["time_to_login_s"], "  user's SSH key in place"))
    events += [(s["t"], f"  platform (pool flow): {s['event']}"
                + (f" FAILED: {s['error']}" if s["error"] else ""))
               for s in (report.get("pps") or {}).get("steps", [])]
    lines.append("timeline (seconds from boot start):")
    for t, text in sorted(events, key=lambda e: (e[0] is None, e[0] or 0)):
        lines.append(f"  {t if t is not None else '?':>7} {text}")
    user = report["user"]
    lines.append("provisioned:")
    lines.append(f"  user {user.get('name')}: exists={user.get('exists')}, "
                 f"keys={len(user.get('authorized_keys') or [])}, "
                 f"password login={'allowed' if user.get('password_login_allowed') else 'off'}")
    lines.append(f"  host name: {report['hostname']}; customData applied: "
                 f"{report['custom_data_applied']}")
    disk = report["resource_disk"]
    lines.append(f"  resource disk: {disk['fstype'] or 'not mounted'}"
                 f"{' at ' + disk['mountpoint'] if disk['mountpoint'] else ''}")
    lines.append(f"  cloud-init status: {report['cloud_init_status']}")
    for err in report["cloud_init_errors"][:5]:
        lines.append(f"    error: {err}")
    lines.append(f"times: ready {report['time_to_ready_s']} s, login "
                 f"{report['time_to_login_s']} s, provisioned "
                 f"{report['time_to_provisioned_s']} s; cpu {report['cpu_s']} s; "
                 f"peak {report['peak_rss_mb']} MB; wall {report['wall_s']} s")
    v = report["verdict"]
    lines.append(f"verdict: {'OK' if v['ok'] else 'UNEXPECTED'} (expected {v['expected']})")
    for p in v["problems"]:
        lines.append(f"  - {p}")
    return "\n".join(lines)
