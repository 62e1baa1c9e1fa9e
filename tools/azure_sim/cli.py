"""Command line of the simulator: ``azure-sim boot``, ``bench`` and ``diff``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from azure_sim import deps, interrupt
from azure_sim.scenario import ScenarioError, load_scenario


def _boot(args: argparse.Namespace) -> int:
    from azure_sim.boot import SimError, boot
    from azure_sim.report import summary

    try:
        text = Path(args.scenario).read_text() if args.scenario else None
        scenario = load_scenario(text)
    except (OSError, ScenarioError) as exc:
        print(f"azure-sim: {exc}", file=sys.stderr)
        return 2
    try:
        if args.vm:
            from azure_sim import vm

            report = vm.boot(scenario, deb=args.deb, timeout=args.timeout,
                             logs_to=args.logs, cloud_init=args.cloud_init,
                             datasource=args.datasource)
        else:
            report = boot(scenario, cloud_init=args.cloud_init, datasource=args.datasource,
                          keep=args.keep, timeout=args.timeout, logs_to=args.logs)
    except SimError as exc:
        print(f"azure-sim: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print("azure-sim: interrupted; everything this run made was removed",
              file=sys.stderr)
        return interrupt.exit_code(exc)
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    if args.html:
        from azure_sim import html_report

        Path(args.html).write_text(html_report.render(report))
    if not args.quiet:
        print(summary(report))
    if report.get("sim_error") and not report["stages"]:
        return 2
    return 0 if report["verdict"]["ok"] else 1


def _bench(args: argparse.Namespace) -> int:
    if args.vm:
        from azure_sim import vmbench

        return vmbench.main(args)
    from azure_sim import bench

    if args.timeout is None:
        args.timeout = 60.0
    return bench.main(args)


def _diff(args: argparse.Namespace) -> int:
    """Exit 0: no undocumented difference; 1: some; 2: could not run; 130: Ctrl-C."""
    from azure_sim import diff
    from azure_sim.boot import SimError, boot

    scenario_text = Path(args.scenario).read_text if args.scenario else lambda: None
    try:
        res = diff.run(load_scenario(scenario_text()), cloud_init=args.cloud_init,
                       boot=boot, timeout=args.timeout, on_error=SimError,
                       allowlist=diff.parse_allowlist(Path(args.allowlist).read_text()))
    except (OSError, ScenarioError, diff.AllowlistError, SimError) as exc:
        print(f"azure-sim: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print("azure-sim: interrupted; both boots' leftovers were removed", file=sys.stderr)
        return interrupt.exit_code(exc)
    print(json.dumps(res, indent=2) if args.json else diff.render(res))
    return 0 if res["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="azure-sim", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("boot", help="simulate one Azure first boot")
    b.add_argument("scenario", nargs="?", help="scenario YAML (default: built in)")
    b.add_argument("--cloud-init", default=deps.DEFAULT_CLOUD_INIT,
                   choices=sorted(deps.CLOUD_INIT))
    b.add_argument("--datasource", default="plugin", choices=["plugin", "builtin"])
    b.add_argument("--report", help="write the JSON report here")
    b.add_argument("--html", help="write a one-page HTML report (the timeline) here")
    b.add_argument("--keep", help="copy every file the boot created or changed here")
    b.add_argument("--logs", help="copy cloud-init's and the platform's logs here")
    b.add_argument("--timeout", type=float, help="seconds before the VM is killed")
    b.add_argument("--quiet", action="store_true", help="no summary on stdout")
    b.add_argument("--vm", action="store_true",
                   help="boot a Debian VM under QEMU instead: Debian 12 for 22.4.2, "
                        "Debian 13 for 25.1.4 (docs/vm.md)")
    b.add_argument("--deb", help="with --vm: the .deb to install (default: dist/'s)")
    b.set_defaults(func=_boot)
    n = sub.add_parser("bench", help="compare plug-in and built-in datasource boots")
    n.add_argument("--runs", type=int, default=3)
    n.add_argument("--cloud-init", action="append", choices=sorted(deps.CLOUD_INIT))
    n.add_argument("--datasource", action="append", choices=["plugin", "builtin"])
    n.add_argument("--dhcp-client", action="append",
                   choices=["dhclient", "dhcpcd", "udhcpc"])
    n.add_argument("--json", help="write raw results here")
    n.add_argument("--scenario", help="boot this scenario instead of the default (e.g. "
                   "scenarios/pps-running.yaml: adds the assignment-to-Ready ratio)")
    n.add_argument("--timeout", type=float, default=None,
                   help="seconds before one boot is killed (default 60; --vm: 400)")
    n.add_argument("--deb", help="with --vm: the .deb every boot installs (default: dist/'s)")
    n.add_argument("--vm", action="store_true",
                   help="QEMU VM boots, built-in vs plug-in on one image (default "
                        "cloud-init 22.4.2 only; docs/performance.md)")
    n.set_defaults(func=_bench)
    d = sub.add_parser("diff", help="boot with both datasources; show what differs")
    d.add_argument("scenario", nargs="?", help="scenario YAML (default: built in)")
    d.add_argument("--cloud-init", default=deps.DEFAULT_CLOUD_INIT,
                   choices=sorted(deps.CLOUD_INIT))
    d.add_argument("--json", action="store_true", help="the result as JSON on stdout")
    d.add_argument("--allowlist", default=str(deps.REPO / "docs" / "differences.md"),
                   help="documented differences (default: docs/differences.md)")
    d.add_argument("--timeout", type=float, help="seconds before a boot is killed")
    d.set_defaults(func=_diff)
    args = parser.parse_args(argv)
    interrupt.install()  # a kill PID cleans up as Ctrl-C does
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
