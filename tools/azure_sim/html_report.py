"""One self-contained HTML page of a boot report: the timeline as a picture (pure).

``render(report)`` takes the JSON report of ``azure-sim boot`` (sandbox or
VM, docs/simulator.md) and returns one page: a verdict banner, the key
moments, an inline SVG timeline (cloud-init stages as bars, platform
requests as ticks per endpoint, Ready / failure / SSH key / host key moments
as vertical lines) and the details below it. No script, no external asset:
the page reads the same from a file, a mail attachment or a CI artifact.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any, Optional

WIDTH = 1100
LABEL_W = 150
RIGHT_PAD = 30
LANE_H = 26
TOP = 44
LABEL_ROW_H = 15
STAGE_COLORS = {"init-local": "#4e79a7", "os-network": "#9c9c9c", "init": "#59a14f",
                "modules-config": "#edc948", "modules-final": "#b07aa1"}
MOMENT_COLORS = {"ready": "#1a7f37", "failure": "#cf222e", "login": "#0969da",
                 "host keys": "#8250df"}
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;
color:#1f2328;background:#fff}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:22px 0 6px}
.banner{padding:10px 14px;border-radius:6px;font-weight:600;margin:10px 0}
.ok{background:#dafbe1;color:#1a7f37;border:1px solid #1a7f37}
.bad{background:#ffebe9;color:#cf222e;border:1px solid #cf222e}
.facts{display:flex;gap:12px;flex-wrap:wrap;margin:10px 0}
.fact{border:1px solid #d0d7de;border-radius:6px;padding:6px 12px;min-width:110px}
.fact b{display:block;font-size:18px} .fact span{color:#59636e;font-size:12px}
table{border-collapse:collapse;margin:4px 0} td,th{border:1px solid #d0d7de;
padding:3px 8px;text-align:left;vertical-align:top;font-size:13px}
th{background:#f6f8fa} code{font:12px ui-monospace,Menlo,Consolas,monospace}
svg text{font:12px system-ui,sans-serif}
"""


def _num(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) else None


def _secs(value: Any) -> str:
    v = _num(value)
    return "—" if v is None else f"{v:.2f} s"


def nice_step(span: float, ticks: int = 8) -> float:
    """A round tick step (1, 2 or 5 times a power of ten) giving about ``ticks`` ticks."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * power:
            return m * power
    return 10 * power


def moments(report: dict[str, Any]) -> list[tuple[str, float, str]]:
    """(kind, t, label) of the moments worth a vertical line."""
    out = []
    if _num(report.get("time_to_ready_s")) is not None:
        out.append(("ready", report["time_to_ready_s"], "Ready"))
    failure = report.get("failure") or {}
    if _num(failure.get("t")) is not None:
        out.append(("failure", failure["t"], failure.get("substatus") or "failure"))
    if _num(report.get("time_to_login_s")) is not None:
        out.append(("login", report["time_to_login_s"], "SSH key in place"))
    if _num(report.get("time_to_host_keys_s")) is not None:
        out.append(("host keys", report["time_to_host_keys_s"], "host keys"))
    return out


def _label_width(text: str) -> float:
    return 7.2 * len(text) + 8  # 12px bold sans: about 7 px a character


def label_rows(spans: list[tuple[float, float]], gap: float = 6) -> list[int]:
    """Put each label (x, width), left to right, on the first row it does not overlap."""
    ends: list[float] = []
    rows = []
    for x0, width in spans:
        left, right = (x0 - width, x0) if x0 > WIDTH - 160 else (x0, x0 + width)
        row = next((i for i, end in enumerate(ends) if left >= end + gap), len(ends))
        if row == len(ends):
            ends.append(right)
        else:
            ends[row] = right
        rows.append(row)
    return rows


def _request_color(status: Any) -> str:
    if isinstance(status, int):
        return "#1a7f37" if status < 400 else ("#bc4c00" if status < 500 else "#cf222e")
    return "#cf222e"  # reset, timeout


def timeline_svg(report: dict[str, Any]) -> str:
    """The boot as an inline SVG: one lane per stage, one per platform endpoint."""
    stages = [s for s in report.get("stages") or [] if _num(s.get("start")) is not None]
    requests = [r for r in report.get("requests") or [] if _num(r.get("t")) is not None]
    marks = moments(report)
    ends = [s["start"] + (s.get("seconds") or 0) for s in stages]
    ends += [r["t"] for r in requests] + [t for _, t, _ in marks]
    span = max(ends, default=1.0) or 1.0
    step = nice_step(span)
    span = math.ceil(span / step) * step
    stage_lanes = list(dict.fromkeys(s["stage"] for s in stages))
    endpoint_lanes = list(dict.fromkeys(r["endpoint"] for r in requests))
    lanes = [("stage", n) for n in stage_lanes] + [("endpoint", n) for n in endpoint_lanes]
    plot_w = WIDTH - LABEL_W - RIGHT_PAD

    def x(t: float) -> float:
        return round(LABEL_W + plot_w * (t / span), 1)

    marks = sorted(marks, key=lambda m: m[1])
    rows = label_rows([(x(t), _label_width(f"{label} {t:.2f} s")) for _, t, label in marks])
    top = TOP + LABEL_ROW_H * max(max(rows, default=0), 0)
    height = top + LANE_H * max(len(lanes), 1) + 40

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="boot timeline">',
           f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>']
    bottom = top + LANE_H * max(len(lanes), 1)
    for i, (kind, name) in enumerate(lanes):
        y = top + i * LANE_H
        if i % 2:
            out.append(f'<rect x="{LABEL_W}" y="{y}" width="{plot_w}" height="{LANE_H}" '
                       'fill="#f6f8fa"/>')
        label = name if kind == "stage" else f"{name} requests"
        out.append(f'<text x="{LABEL_W - 8}" y="{y + 17}" text-anchor="end" '
                   f'fill="#1f2328">{escape(label)}</text>')
    n_ticks = int(round(span / step))
    for k in range(n_ticks + 1):
        t = k * step
        out.append(f'<line x1="{x(t)}" y1="{top}" x2="{x(t)}" y2="{bottom}" '
                   'stroke="#d0d7de" stroke-width="1"/>')
        out.append(f'<text x="{x(t)}" y="{bottom + 16}" text-anchor="middle" '
                   f'fill="#59636e">{t:g} s</text>')
    for s in stages:
        y = top + lanes.index(("stage", s["stage"])) * LANE_H + 4
        w = max(x(s["start"] + (s.get("seconds") or 0)) - x(s["start"]), 2)
        color = STAGE_COLORS.get(s["stage"], "#76b7b2")
        boot = f" (boot {s['boot']})" if (report.get("stages") or [{}])[-1].get("boot", 1) > 1 \
            else ""
        tip = f"{s['stage']}{boot}: {_secs(s.get('seconds'))} from {_secs(s['start'])}, " \
              f"rc {s.get('rc')}"
        out.append(f'<rect x="{x(s["start"])}" y="{y}" width="{w}" height="{LANE_H - 8}" '
                   f'rx="3" fill="{color}"><title>{escape(tip)}</title></rect>')
        if s.get("rc"):
            out.append(f'<text x="{x(s["start"]) + w + 4}" y="{y + 13}" fill="#cf222e">'
                       f'rc {escape(str(s["rc"]))}</text>')
    for r in requests:
        y = top + lanes.index(("endpoint", r["endpoint"])) * LANE_H + 4
        tip = f"{_secs(r['t'])} {r.get('method')} {r.get('path')} -> {r.get('status')}"
        out.append(f'<rect x="{x(r["t"]) - 2}" y="{y}" width="4" height="{LANE_H - 8}" '
                   f'fill="{_request_color(r.get("status"))}"><title>{escape(tip)}</title>'
                   '</rect>')
    for (kind, t, label), row in zip(marks, rows):
        color = MOMENT_COLORS[kind]
        out.append(f'<line x1="{x(t)}" y1="{top - 6}" x2="{x(t)}" y2="{bottom}" '
                   f'stroke="{color}" stroke-width="2" stroke-dasharray="5 3"/>')
        anchor = "end" if x(t) > WIDTH - 160 else "start"
        dx = -4 if anchor == "end" else 4
        out.append(f'<text x="{x(t) + dx}" y="{14 + LABEL_ROW_H * row}" '
                   f'text-anchor="{anchor}" fill="{color}" font-weight="600">'
                   f'{escape(label)} {t:.2f} s</text>')
    out.append("</svg>")
    return "\n".join(out)


def _table(rows: list[list[Any]], head: list[str]) -> str:
    if not rows:
        return "<p>none</p>"
    cells = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>"
                    for row in rows)
    return ("<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"
            + cells + "</table>")


def _fact(value: str, label: str) -> str:
    return f'<div class="fact"><b>{escape(value)}</b><span>{escape(label)}</span></div>'


def _outcome(report: dict[str, Any]) -> str:
    verdict = report.get("verdict") or {}
    failure = report.get("failure") or {}
    reason = (failure.get("decoded") or {}).get("reason")
    if report.get("ready"):
        what = f"Ready after {_secs(report.get('time_to_ready_s'))}"
    elif failure:
        what = f"{failure.get('substatus') or 'failure'}: {reason or 'no reason given'}"
    else:
        what = "neither Ready nor a failure was reported"
    expected = verdict.get("expected", "?")
    as_expected = "as expected" if verdict.get("ok") else "NOT as expected"
    css = "ok" if verdict.get("ok") else "bad"
    text = f"{what} — {as_expected} (expected: {expected})"
    problems = "".join(f"<li>{escape(p)}</li>" for p in verdict.get("problems") or [])
    sim_error = report.get("sim_error")
    extra = f"<p><b>simulator:</b> {escape(str(sim_error))}</p>" if sim_error else ""
    return (f'<div class="banner {css}">{escape(text)}</div>'
            + (f"<ul>{problems}</ul>" if problems else "") + extra)


def render(report: dict[str, Any]) -> str:
    """The whole page for one boot report."""
    title = (f"azure-sim: {report.get('scenario')} — cloud-init "
             f"{report.get('cloud_init_version')}, datasource {report.get('datasource')}"
             + (" (QEMU VM)" if report.get("vm") else ""))
    user = report.get("user") or {}
    disk = report.get("resource_disk") or {}
    facts = "".join([
        _fact(_secs(report.get("time_to_ready_s")), "Ready"),
        _fact(_secs(report.get("time_to_login_s")), "user's SSH key in place"),
        _fact(_secs(report.get("time_to_host_keys_s")), "host keys"),
        _fact(_secs(report.get("time_to_provisioned_s")), "provisioned"),
        _fact(str(report.get("cloud_init_status")), "cloud-init status"),
        _fact(_secs(report.get("cpu_s")), "CPU, all stages"),
        _fact(f"{report.get('peak_rss_mb')} MB", "peak memory"),
        _fact(_secs(report.get("wall_s")), "wall, whole run"),
    ])
    health = [[_secs(h.get("t")), h.get("state"), h.get("substatus") or "",
               (h.get("decoded") or {}).get("reason") or ""]
              for h in report.get("health_reports") or []]
    failure = (report.get("failure") or {}).get("decoded") or {}
    requests = [[_secs(r.get("t")), r.get("endpoint"), r.get("method"), r.get("path"),
                 r.get("status")] for r in report.get("requests") or []]
    stages = [[s.get("boot"), s.get("stage"), _secs(s.get("start")), _secs(s.get("seconds")),
               s.get("rc"), _secs(s.get("cpu_s")), s.get("maxrss_mb")]
              for s in report.get("stages") or []]
    provisioned = [
        ["user", f"{user.get('name')} (exists: {user.get('exists')}, keys: "
                 f"{len(user.get('authorized_keys') or [])})"],
        ["host name", report.get("hostname")],
        ["customData applied", report.get("custom_data_applied")],
        ["resource disk", f"{disk.get('fstype') or 'not mounted'}"
                          f"{' at ' + disk['mountpoint'] if disk.get('mountpoint') else ''}"],
        ["instance id", report.get("instance_id")],
    ]
    vm = report.get("vm") or {}
    vm_rows = [[k, v] for k, v in vm.items() if k.startswith("boot_to_") or k in (
        "accel", "last_stage", "timed_out", "failed_units")]
    legend = " ".join(
        f'<span style="color:{c}">■ {escape(n)}</span>' for n, c in STAGE_COLORS.items())
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>", _outcome(report), f'<div class="facts">{facts}</div>',
        "<h2>Timeline (seconds from <code>cloud-init init --local</code>)</h2>",
        timeline_svg(report),
        f"<p>stages: {legend}; requests: <span style='color:#1a7f37'>■ 2xx/3xx</span> "
        "<span style='color:#bc4c00'>■ 4xx</span> <span style='color:#cf222e'>■ 5xx, "
        "reset, timeout</span>; dashed lines: moments (hover any mark for details)</p>",
        "<h2>Health reports</h2>", _table(health, ["t", "state", "substatus", "reason"]),
    ]
    if failure:
        parts += ["<h2>Failure report (decoded)</h2>",
                  _table([[k, v] for k, v in failure.items()], ["field", "value"])]
    parts += ["<h2>Provisioned</h2>", _table(provisioned, ["what", "state"]),
              "<h2>Stages</h2>",
              _table(stages, ["boot", "stage", "start", "took", "rc", "CPU", "peak MB"]),
              "<h2>Platform requests</h2>",
              _table(requests, ["t", "endpoint", "method", "path", "status"])]
    if vm_rows:
        parts += ["<h2>VM (seconds from QEMU start)</h2>", _table(vm_rows, ["what", "value"])]
    kvp = [[r.get("key"), r.get("value")] for r in report.get("kvp") or []]
    if kvp:
        parts += ["<h2>Hyper-V KVP records</h2>", _table(kvp, ["key", "value"])]
    errors = report.get("cloud_init_errors") or []
    if errors:
        parts += ["<h2>cloud-init errors</h2>", _table([[e] for e in errors], ["error"])]
    parts.append("</body></html>\n")
    return "\n".join(parts)
