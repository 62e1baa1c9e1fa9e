"""``cloudinit-azure`` / ``python3 -m cloudinit_azure``: commands for image authors."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional


def _kvp(args: argparse.Namespace) -> int:
    """Print the KVP pool's records; provisioning reports decoded into their fields."""
    import os

    from cloudinit_azure import kvp, report

    if not os.path.isfile(args.pool):
        print(f"cloudinit-azure kvp: no KVP pool at {args.pool} (not on Hyper-V, or "
              "nothing was written yet)", file=sys.stderr)
        return 2
    try:
        records = kvp.read(args.pool, lock=False)
    except OSError as exc:
        print(f"cloudinit-azure kvp: {args.pool}: {exc.strerror}", file=sys.stderr)
        return 2
    rows = [{"key": k, "value": v,
             **({"decoded": report.decode_report(v)} if k == kvp.REPORT_KEY else {})}
            for k, v in records]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['key']}: {row['value']}")
        for field, value in (row.get("decoded") or {}).items():
            print(f"    {field}: {value}")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    from cloudinit_azure import kvp
    from cloudinit_azure.doctor import cli as doctor

    parser = argparse.ArgumentParser(prog="cloudinit-azure", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("doctor", help="check an image tree or this system against Azure's "
                                      "and the plug-in's requirements",
                       description=doctor.__doc__)
    doctor.add_arguments(d)
    d.set_defaults(func=doctor.run)
    k = sub.add_parser("kvp", help="show the Hyper-V KVP records (the provisioning report "
                                   "decoded)", description=_kvp.__doc__)
    k.add_argument("--pool", default=kvp.DEFAULT_POOL, help=f"default {kvp.DEFAULT_POOL}")
    k.add_argument("--json", action="store_true", help="print the records as JSON")
    k.set_defaults(func=_kvp)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
