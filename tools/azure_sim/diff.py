"""``azure-sim diff``: what a user would notice between our datasource and the built-in.

Pure: two boot reports of the same scenario and cloud-init version (one per
datasource) become one flat view each (``view``), the views are compared key
by key (``compare``), and every difference is either explained by an entry of
the allow-list in docs/differences.md (``parse_allowlist``) or undocumented.
``run`` is the thin boot side: it takes the boot function as a parameter.
Times are never compared (they always differ); a failure scenario compares
the failure reports only.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import yaml

ALLOWLIST = Path(__file__).resolve().parents[2] / "docs" / "differences.md"
ABSENT = "<absent>"
_ENTRY_KEYS = {"id", "kind", "paths", "reason", "cloud_init", "scenarios", "builtin",
               "plugin"}
# deliberate: we chose it; sandbox: the simulator, not a real VM, makes it;
# gap: not done yet, tracked.
KINDS = ("deliberate", "sandbox", "gap")


class AllowlistError(ValueError):
    """docs/differences.md's machine-readable block is missing or malformed."""


@dataclass(frozen=True)
class Allowance:
    """One documented, deliberate difference."""

    id: str
    paths: tuple[str, ...]
    reason: str
    kind: str = "deliberate"
    cloud_init: tuple[str, ...] = ()
    scenarios: tuple[str, ...] = ()
    builtin: Optional[str] = None  # pattern ('*' only) over the built-in's value
    plugin: Optional[str] = None

    def covers(self, path: str, builtin: Any, plugin: Any, *, scenario: str,
               cloud_init: str) -> bool:
        if self.cloud_init and cloud_init not in self.cloud_init:
            return False
        if self.scenarios and not any(fnmatch.fnmatchcase(scenario, s)
                                      for s in self.scenarios):
            return False
        if not any(fnmatch.fnmatchcase(path, p) for p in self.paths):
            return False
        for pattern, value in ((self.builtin, builtin), (self.plugin, plugin)):
            if pattern is not None and not _wildcard(pattern).fullmatch(_text(value)):
                return False
        return True


def _wildcard(pattern: str) -> re.Pattern:
    """Only ``*`` is special in a value pattern (values hold brackets and ``?``)."""
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.S)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _strings(value: Any, key: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise AllowlistError(f"{where}: '{key}' must be a string or a list of strings")


def parse_allowlist(markdown: str) -> list[Allowance]:
    """The ```yaml block of docs/differences.md whose mapping has ``allow:``."""
    for block in re.findall(r"^```ya?ml\n(.*?)^```", markdown, re.M | re.S):
        try:
            doc = yaml.safe_load(block)
        except yaml.YAMLError as exc:
            raise AllowlistError(f"allow-list is not valid YAML: {exc}") from exc
        if isinstance(doc, dict) and "allow" in doc:
            break
    else:
        raise AllowlistError("no ```yaml block with an 'allow:' list")
    out, seen = [], set()
    for i, entry in enumerate(doc["allow"] or []):
        where = f"allow[{i}]"
        if not isinstance(entry, dict):
            raise AllowlistError(f"{where}: not a mapping")
        unknown = set(entry) - _ENTRY_KEYS
        if unknown:
            raise AllowlistError(f"{where}: unknown key '{sorted(unknown)[0]}'")
        for key in ("id", "paths", "reason"):
            if not entry.get(key):
                raise AllowlistError(f"{where}: '{key}' is required")
        if entry.get("kind", "deliberate") not in KINDS:
            raise AllowlistError(f"{where}: 'kind' must be one of {', '.join(KINDS)}")
        if entry["id"] in seen:
            raise AllowlistError(f"{where}: duplicate id '{entry['id']}'")
        seen.add(entry["id"])
        out.append(Allowance(
            id=str(entry["id"]), paths=_strings(entry["paths"], "paths", where),
            reason=" ".join(str(entry["reason"]).split()),
            kind=entry.get("kind", "deliberate"),
            cloud_init=_strings(entry.get("cloud_init"), "cloud_init", where),
            scenarios=_strings(entry.get("scenarios"), "scenarios", where),
            builtin=entry.get("builtin"), plugin=entry.get("plugin")))
    return out


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested data -> {dotted.path: leaf}. A list of scalars (lines of a file, an
    ordered sequence of requests) stays one leaf; lists of mappings are indexed."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        out = {}
        for i, item in enumerate(value):
            out.update(flatten(item, f"{prefix}.{i}" if prefix else str(i)))
        return out
    return {prefix: value}


def requests(report: Mapping[str, Any]) -> list[str]:
    """The platform's view, in order; repeats of one request collapse to ``xN``."""
    out: list[str] = []
    counts: list[int] = []
    for r in report.get("requests") or []:
        line = f"{r['method']} {r['path']} -> {r['status']}"
        if out and out[-1] == line:
            counts[-1] += 1
        else:
            out.append(line)
            counts.append(1)
    return [f"{line} x{n}" if n > 1 else line for line, n in zip(out, counts)]


def failure_reason(failure: Optional[Mapping[str, Any]]) -> Optional[str]:
    if not failure:
        return None
    decoded = failure.get("decoded") or {}
    return decoded.get("reason") or failure.get("description")


def view(report: Mapping[str, Any], expect: str) -> dict[str, Any]:
    """What a user can notice after this boot, flattened for comparison."""
    failure = report.get("failure")
    out: dict[str, Any] = {
        "outcome.ready": bool(report.get("ready")),
        "outcome.ready_count": report.get("ready_count", 0),
        "outcome.failure_reported": bool(failure),
    }
    if expect == "failure":
        out.update({
            "failure.state": failure.get("state") if failure else None,
            "failure.substatus": failure.get("substatus") if failure else None,
            "failure.reason": failure_reason(failure),
        })
        return out
    recoverable = report.get("cloud_init_recoverable_errors") or {}
    out.update({
        "status": report.get("cloud_init_status"),
        "status.errors": sorted(report.get("cloud_init_errors") or []),
        **{f"status.recoverable.{level}": sorted(msgs)
           for level, msgs in recoverable.items()},
        "requests": requests(report),
        "health": [h.get("state") for h in report.get("health_reports") or []],
        "kvp_keys": sorted({r["key"] for r in report.get("kvp") or []}),
        "failure.reason": failure_reason(failure),
    })
    out.update(flatten(report.get("system") or {}))
    return out


def compare(builtin: Mapping[str, Any], plugin: Mapping[str, Any]
            ) -> list[tuple[str, Any, Any]]:
    """(path, built-in value, plug-in value) for every key whose values differ."""
    out = []
    for path in sorted(set(builtin) | set(plugin)):
        b, p = builtin.get(path, ABSENT), plugin.get(path, ABSENT)
        if b != p:
            out.append((path, b, p))
    return out


def classify(diffs: Sequence[tuple[str, Any, Any]], allowlist: Sequence[Allowance], *,
             scenario: str, cloud_init: str) -> list[dict[str, Any]]:
    out = []
    for path, b, p in diffs:
        allowed = next((a for a in allowlist if a.covers(
            path, b, p, scenario=scenario, cloud_init=cloud_init)), None)
        out.append({"path": path, "builtin": b, "plugin": p,
                    "allowed": allowed.id if allowed else None,
                    "kind": allowed.kind if allowed else None,
                    "reason": allowed.reason if allowed else None})
    return out


def builtin_unsupported(scenario: Mapping[str, Any], cloud_init: str) -> Optional[str]:
    """Scenarios the built-in datasource is known not to boot, said before booting."""
    client = scenario.get("dhcp_client", "dhclient")
    if cloud_init.startswith("22.") and client != "dhclient":
        return (f"cloud-init {cloud_init}'s built-in datasource runs only dhclient for "
                f"its ephemeral DHCP; this image has {client}")
    return None


def result(scenario: Mapping[str, Any], cloud_init: str, builtin: Optional[Mapping],
           plugin: Mapping[str, Any], allowlist: Sequence[Allowance],
           unsupported: Optional[str] = None) -> dict[str, Any]:
    """The diff of two reports (or of one, when the built-in could not boot)."""
    expect = scenario.get("expect", "ready")
    name = scenario.get("name", "default")
    out: dict[str, Any] = {
        "scenario": name, "cloud_init_version": cloud_init, "expect": expect,
        "plugin_verdict": plugin.get("verdict"),
        "builtin_verdict": builtin.get("verdict") if builtin else None,
        "builtin_unsupported": unsupported, "compared": 0, "differences": [],
    }
    if builtin is not None and unsupported is None and builtin.get("sim_error"):
        unsupported = f"the built-in's boot did not finish: {builtin['sim_error']}"
    elif builtin is not None and unsupported is None and expect == "ready" \
            and not builtin.get("ready") and plugin.get("ready"):
        problems = (builtin.get("verdict") or {}).get("problems") or []
        unsupported = "the built-in datasource did not provision: " + "; ".join(problems)
    out["builtin_unsupported"] = unsupported
    if unsupported is None and builtin is not None:
        theirs, ours = view(builtin, expect), view(plugin, expect)
        out["compared"] = len(set(theirs) | set(ours))
        out["differences"] = classify(compare(theirs, ours), allowlist, scenario=name,
                                      cloud_init=cloud_init)
    undocumented = [d for d in out["differences"] if d["allowed"] is None]
    out["undocumented"] = len(undocumented)
    out["documented"] = len(out["differences"]) - len(undocumented)
    plugin_ok = bool((plugin.get("verdict") or {}).get("ok"))
    # Not comparable: our own boot must still be right on its own terms.
    out["ok"] = not undocumented and (unsupported is None or plugin_ok)
    return out


def _short(value: Any, width: int = 70) -> str:
    text = _text(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def _values(builtin: Any, plugin: Any) -> list[str]:
    """Two lists as the lines only one side has; anything else side by side."""
    if isinstance(builtin, list) and isinstance(plugin, list):
        only_b = [x for x in builtin if x not in plugin]
        only_p = [x for x in plugin if x not in builtin]
        if only_b or only_p:
            return ([f"- built-in only: {_short(x)}" for x in only_b]
                    + [f"+ plug-in only:  {_short(x)}" for x in only_p])
        return [f"same items, other order: built-in {_short(builtin, 50)}"]
    return [f"built-in: {_short(builtin)}", f"plug-in:  {_short(plugin)}"]


def render(res: Mapping[str, Any]) -> str:
    """The human summary: undocumented differences first, then documented ones."""
    lines = [f"azure-sim diff: scenario '{res['scenario']}', cloud-init "
             f"{res['cloud_init_version']} (expect {res['expect']})"]
    for who in ("plugin", "builtin"):
        v = res.get(f"{who}_verdict")
        if v is not None:
            lines.append(f"  {who}: verdict {'OK' if v.get('ok') else 'UNEXPECTED'}"
                         + "".join(f"\n    - {p}" for p in v.get("problems") or []))
    if res["builtin_unsupported"]:
        lines.append(f"  not compared: {res['builtin_unsupported']}")
    diffs = res["differences"]
    lines.append(f"  {res['compared']} keys compared, {len(diffs)} differences: "
                 f"{res['undocumented']} undocumented, {res['documented']} documented")
    for d in sorted(diffs, key=lambda d: (d["allowed"] is not None, d["path"])):
        tag = f"[{d['allowed']}]" if d["allowed"] else "UNDOCUMENTED"
        lines.append(f"  {tag} {d['path']}")
        lines += [f"      {line}" for line in _values(d["builtin"], d["plugin"])]
    lines.append(f"diff: {'OK' if res['ok'] else 'UNDOCUMENTED DIFFERENCES'}")
    return "\n".join(lines)


Boot = Callable[..., Mapping[str, Any]]


def run(scenario: Mapping[str, Any], *, cloud_init: str, boot: Boot,
        allowlist: Sequence[Allowance], timeout: Optional[float] = None,
        on_error: type[Exception] = Exception) -> dict[str, Any]:
    """Boot the scenario with both datasources (``boot`` is azure_sim.boot.boot)."""
    unsupported = builtin_unsupported(scenario, cloud_init)
    builtin = None
    if unsupported is None:
        try:
            builtin = boot(scenario, cloud_init=cloud_init, datasource="builtin",
                           timeout=timeout)
        except on_error as exc:  # the simulator could not boot it: say so
            unsupported = f"the built-in's boot could not run: {exc}"
    plugin = boot(scenario, cloud_init=cloud_init, datasource="plugin", timeout=timeout)
    return result(scenario, cloud_init, builtin, plugin, allowlist, unsupported)
