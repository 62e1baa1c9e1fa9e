"""``cloudinit-azure`` / ``python3 -m cloudinit_azure``: commands for image authors."""

from __future__ import annotations

import argparse
import sys
from typing import Optional


def main(argv: Optional[list[str]] = None) -> int:
    from cloudinit_azure.doctor import cli as doctor

    parser = argparse.ArgumentParser(prog="cloudinit-azure", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("doctor", help="check an image tree or this system against Azure's "
                                      "and the plug-in's requirements",
                       description=doctor.__doc__)
    doctor.add_arguments(d)
    d.set_defaults(func=doctor.run)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
