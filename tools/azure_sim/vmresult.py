"""A VM run's observations -> the boot report (pure: no I/O).

The supervisor's ``result.json`` holds one entry per boot (QEMU process): its
host-clock times, console stages, the guest's base64 report and, for the
first boot, the SSH prober's findings. The guest's report is in guest time;
each boot's END line (guest time) reached the host at ``t_report`` (polled
every 50 ms), which maps that boot's guest times to host times. The report is
``report.build_report``'s with the state of the last boot and the stages of
all, plus a ``vm`` section (docs/vm.md).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Optional

from azure_sim import waagent_report
from azure_sim.report import build_report
from azure_sim.vmconsole import ANSI
from azure_sim.vmssh import key_changed


def guest_report(boot: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The boot's guest report with its times moved to the host clock, or None."""
    if not boot.get("report_b64"):
        return None
    raw = json.loads(base64.b64decode(boot["report_b64"]))
    offset = boot["t_report"] - boot["report_guest_time"] if boot.get(
        "report_guest_time") else 0.0
    raw["clock_offset_s"] = offset
    for stage in raw.get("stages") or []:
        stage["start"] += offset
        stage["end"] += offset
        stage["boot"] = boot["boot"]
    if raw.get("t0") is not None:
        raw["t0"] += offset
    for key, value in list((raw.get("watch") or {}).items()):
        if value is not None:
            raw["watch"][key] = value + offset
    return raw


def _status(text: Optional[str]) -> Optional[str]:
    try:
        data = json.loads(text or "")
    except ValueError:
        return None
    return data.get("extended_status") or data.get("status")


def _health(journal: list[dict[str, Any]], ready: bool) -> list[float]:
    return [e["t"] for e in journal if e.get("endpoint") == "health"
            and (e.get("health") or {}).get("state") is not None
            and ((e["health"]["state"] == "Ready") == ready)]


def _since(t: Optional[float], t0: Optional[float]) -> Optional[float]:
    return round(t - t0, 2) if t is not None and t0 is not None else None


def boot_error(boot: dict[str, Any], limit: float, boots: int) -> Optional[str]:
    """Why a boot gave no report ('timed out after N s; last stage ...'), or None."""
    if (not boot["timed_out"] and boot.get("report_b64")) or boot.get("power_cut"):
        return None  # a power-cut boot ends without a report by design
    what = (f"timed out after {limit:.0f} s" if boot["timed_out"]
            else f"QEMU exited (rc {boot.get('qemu_rc')}) without a report")
    prefix = f"boot {boot['boot']}: " if boots > 1 else ""
    return f"{prefix}{what}; last stage on the serial console: {boot['last_stage']}"


TAIL_LINES = 40


def console_tail(text: str, lines: int = TAIL_LINES) -> list[str]:
    """The console's last lines without colour codes: why a boot hung, in the report itself."""
    clean = [ANSI.sub("", line).rstrip() for line in text.splitlines()]
    return [line for line in clean if line.strip()][-lines:]


def platform_requests(journal: list[dict[str, Any]], last: int = 20) -> list[str]:
    """The platform's last requests ('+s METHOD path -> status'): how far the guest got."""
    t0 = journal[0].get("t", 0.0) if journal else 0.0
    return [f"+{e.get('t', t0) - t0:.2f}s {e.get('method') or e.get('event') or ''} "
            f"{e.get('path') or e.get('endpoint', '?')} -> {e.get('status', '')}"
            for e in journal[-last:]]


def ssh_summary(boot: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    """The first boot's SSH findings, in seconds from QEMU start and from init-local."""
    ssh = boot.get("ssh")
    if ssh is None:
        return {"boot_to_ssh_login_s": None, "host_key_changed": None, "ssh": None}
    t_q = boot["t_qemu_start"]
    final = raw.get("host_keys_pub")
    return {
        "boot_to_ssh_login_s": _since(ssh["t_login"], t_q),
        "boot_to_ssh_password_login_s": _since(ssh["t_password_login"], t_q),
        "boot_to_ssh_first_contact_s": _since(ssh["t_first_contact"], t_q),
        "ssh_login_after_init_local_s": _since(ssh["t_login"], raw.get("t0")),
        "host_key_changed": key_changed(ssh["first_host_key"], final),
        "ssh": {"attempts": ssh["attempts"], "first_host_key": ssh["first_host_key"],
                "host_keys_seen": len(ssh["host_keys_seen"]),
                "host_keys_at_end": final, "last_error": ssh["last_error"]},
    }


def assemble(*, scenario: dict[str, Any], plan: dict[str, Any], result: dict[str, Any],
             journal: list[dict[str, Any]], leases: str, cloud_init: str, datasource: str,
             limit: float, started: float, t_boot: float,
             serial_log: Optional[str], now: Optional[float] = None,
             console: Optional[str] = None) -> dict[str, Any]:
    import time

    boots = result["boots"]
    raws = [guest_report(b) for b in boots]
    first, last = boots[0], boots[-1]
    raw: dict[str, Any] = dict(next((r for r in reversed(raws) if r), {}))
    raw1 = raws[0] or {}
    raw["stages"] = [s for r in raws if r for s in r.get("stages") or []]
    raw["t0"] = raw1.get("t0") or first.get("milestones", {}).get(
        "init_local_start") or first["t_qemu_start"]
    raw["watch"] = raw1.get("watch") or {}
    errors = [e for e in (boot_error(b, limit, plan["boots"]) for b in boots) if e]
    if len(boots) < plan["boots"] and not errors:
        errors.append(f"only {len(boots)} of {plan['boots']} boots ran")
    if errors:
        raw["error"] = "; ".join(errors)
    report = build_report(scenario=scenario, raw=raw, journal=journal, leases=leases,
                          cloud_init=cloud_init, datasource=datasource,
                          wall_s=(now or time.time()) - started)
    t_q = first["t_qemu_start"]
    ready, fail = _health(journal, True), _health(journal, False)
    ms = first.get("milestones") or {}
    vm: dict[str, Any] = {
        "accel": plan["accel"], "release": plan.get("release"), "kernel": raw.get("kernel"),
        "root_image": Path(plan["root_image"]).name,
        "prepare_s": round(t_boot - started, 2),
        "boot_to_init_local_s": _since(ms.get("init_local_start"), t_q),
        "boot_to_ready_s": _since(ready[0] if ready else None, t_q),
        "boot_to_failure_report_s": _since(fail[0] if fail else None, t_q),
        "boot_to_cloud_final_s": _since(ms.get("cloud_final_done"), t_q),
        "boot_to_report_s": _since(first.get("t_report"), t_q),
        "boot_to_poweroff_s": _since(first["t_qemu_end"], t_q),
        "timed_out": any(b["timed_out"] for b in boots), "last_stage": last["last_stage"],
        "console_stages": [{"t": _since(s["t"], t_q), "stage": s["stage"]}
                           for s in first.get("console_stages") or []],
        "clock_offset_s": round(raw1["clock_offset_s"], 3) if raws[0] else None,
        "resource_disk_link": raw.get("resource_disk_link"),
        "failed_units": raw.get("failed_units"),
        "datasource_list_cfg": raw.get("datasource_list_cfg"),
        "ds_identify_cfg": raw.get("cloud_cfg_ds"),
        "datasource_module": raw.get("datasource_module"),
        "serial_log": serial_log,
        **ssh_summary(first, raw1),
        "boots": [{"boot": b["boot"], "timed_out": b["timed_out"],
                   "seconds": round(b["t_qemu_end"] - b["t_qemu_start"], 2),
                   "ready_reports": sum(b["t_qemu_start"] <= t <= b["t_qemu_end"]
                                        for t in ready),
                   "failure_reports": sum(b["t_qemu_start"] <= t <= b["t_qemu_end"]
                                          for t in fail),
                   "instance_id": (r or {}).get("instance_id"),
                   "datasource_module": (r or {}).get("datasource_module"),
                   "cloud_init_status": _status((r or {}).get("status_raw")),
                   "actions": (r or {}).get("actions"),
                   "power_cut": b.get("power_cut")}
                  for b, r in zip(boots, raws)],
    }
    if raw.get("observe_error"):
        vm["observe_error"] = raw["observe_error"]
    report["certificate_keys"] = plan.get("certificate_keys") or {}
    waagent_report.add(report, raw, journal, scenario)
    if not report["verdict"]["ok"]:
        vm["cloud_init_log_tail"] = raw.get("cloud_init_log_tail")
    if errors:  # no guest report: the console and the platform say how far it got
        vm["console_tail"] = console_tail(console or "")
        vm["platform_requests"] = platform_requests(journal)
    report["vm"] = vm
    return report
