"""The report's ``waagent`` part: what the Azure Linux Agent did, and whether the platform
heard one consistent story (``waagent: true``; pure functions of the journal and the
guest's findings, ``waagent_guest``).

The story the platform may hear, decided from waagent's cloud-init handler (2.7.3 and
2.12): with its marker holding this VM's id it reports nothing; without one it
reports NotReady ("Provisioning") and then Ready once it sees our ovf-env.xml copy
and a host key; with another VM's id in the marker it reports Ready. So:

- never a Ready after a ProvisioningFailed, from anyone;
- never a NotReady after our Ready, from anyone;
- after our Ready the agent may at most repeat Ready (then ``Ready reported 2 times``
  fails the verdict anyway); with the plug-in's marker it sends nothing.

A request is the agent's when its User-Agent is ``WALinuxAgent/<version>``; the
plug-in and cloud-init's own datasource send others.
"""

from __future__ import annotations

from typing import Any, Optional

from azure_sim.scenario import DEFAULT_VM_ID

STATUS_ENDPOINTS = ("hostplugin-status", "status-blob")


def _by(entry: dict[str, Any]) -> str:
    agent = (entry.get("headers") or {}).get("user-agent") or ""
    return "waagent" if agent.startswith("WALinuxAgent/") else "cloud-init"


def health_reports(journal: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every health report in order: state, substatus, who sent it, when (epoch s)."""
    out = []
    for e in journal:
        if e.get("endpoint") == "health" and e.get("health"):
            out.append({"t": e["t"], "state": e["health"].get("state"),
                        "substatus": e["health"].get("substatus"), "by": _by(e)})
    return out


def story_problems(reports: list[dict[str, Any]]) -> list[str]:
    """Where the health reports contradict each other (see the module docstring)."""
    problems = []
    failed = ours_ready = False
    for r in reports:
        what = f"{r['state']}{'/' + r['substatus'] if r['substatus'] else ''} by {r['by']}"
        if r["state"] == "Ready":
            if failed:
                problems.append(f"{what} after a ProvisioningFailed")
            ours_ready = ours_ready or r["by"] != "waagent"
        else:
            if ours_ready:
                problems.append(f"{what} after our Ready")
            failed = failed or r["substatus"] == "ProvisioningFailed"
    return problems


def marker_matches(marker: Optional[str], vm_id: str) -> bool:
    """waagent's own test of its marker: the DMI id in either byte order of its first
    three fields, any case."""
    if not marker:
        return False

    def swap(uuid: str) -> str:
        parts = uuid.lower().split("-")
        if len(parts) != 5:
            return uuid.lower()
        return "-".join([bytes.fromhex(p)[::-1].hex() for p in parts[:3]] + parts[3:])

    text = marker.strip().lower()
    return swap(vm_id) in (text, swap(text))


def summarize(guest: Optional[dict[str, Any]], journal: list[dict[str, Any]],
              vm_id: str, expect: str) -> tuple[dict[str, Any], list[str]]:
    """The report's ``waagent`` section and the verdict's problems with it."""
    reports = health_reports(journal)
    uploads = [e for e in journal if e.get("endpoint") in STATUS_ENDPOINTS]
    agent_requests = sorted({e["endpoint"] for e in journal if _by(e) == "waagent"})
    guest = guest or {}
    marker = (guest.get("provisioned") or {}).get("text")
    summary = {
        "version": guest.get("version"), "service": guest.get("service"),
        "health_reports": [{**r, "t": round(r["t"] - reports[0]["t"], 2)} for r in reports],
        "agent_health_reports": [r["state"] + (f"/{r['substatus']}" if r["substatus"] else "")
                                 for r in reports if r["by"] == "waagent"],
        "provisioned_marker": marker, "marker_matches_vm": marker_matches(marker, vm_id),
        "provisioning_skipped": guest.get("provisioning_skipped"),
        "ovf_copy": guest.get("ovf_copy"), "disable_agent": guest.get("disable_agent"),
        "settled": guest.get("settled"), "waited_s": guest.get("waited_s"),
        "status_uploads": len(uploads),
        "last_status": uploads[-1].get("vm_status") if uploads else None,
        "reached_extension_loop": guest.get("settled") == "loop" and bool(uploads),
        "agent_requests": agent_requests,
        "errors": guest.get("errors") or [], "warnings": guest.get("warnings") or [],
        "custom_data_runs": guest.get("custom_data_runs"),
        "story_problems": story_problems(reports),
    }
    if guest.get("error"):
        summary["guest_error"] = guest["error"]
    problems = [f"waagent: {p}" for p in summary["story_problems"]]
    if not guest or guest.get("error"):
        problems.append("waagent: the guest did not report on the agent")
    elif expect == "ready":
        if not summary["reached_extension_loop"]:
            problems.append(f"waagent: no extension loop (log: {summary['settled']}, "
                            f"{len(uploads)} status uploads)")
        if not summary["marker_matches_vm"]:
            problems.append(f"waagent: provisioned marker {marker!r} is not this VM's")
        if summary["custom_data_runs"] not in (None, 1):
            problems.append(f"waagent: customData ran {summary['custom_data_runs']} times")
    elif expect == "failure":
        if marker is not None or summary["ovf_copy"] is not None:
            problems.append("waagent: a marker or ovf-env.xml copy is left after the failure")
        if summary["settled"] != "waiting":
            problems.append(f"waagent: not waiting for ovf-env.xml ({summary['settled']})")
    return summary, problems


def add(report: dict[str, Any], raw: dict[str, Any], journal: list[dict[str, Any]],
        scenario: dict[str, Any], vm_id: str = DEFAULT_VM_ID) -> None:
    """``vmresult``'s hook: the section and its verdict problems (``waagent: true`` only)."""
    if not scenario.get("waagent"):
        return
    report["waagent"], problems = summarize(raw.get("waagent"), journal, vm_id,
                                            scenario.get("expect", "ready"))
    if problems:
        report["verdict"]["problems"] += problems
        report["verdict"]["ok"] = False
