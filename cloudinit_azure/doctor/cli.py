"""``cloudinit-azure doctor [--root DIR] [--json]``: exit 0 ok, 1 warnings, 2 errors."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, TextIO

from cloudinit_azure.doctor import RootError, inspect, render
from cloudinit_azure.doctor.model import exit_code

BAD_INPUT = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default="/",
                        help="the root tree to check: an unpacked image (default: this "
                             "system, /)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace, out: Optional[TextIO] = None,
        err: Optional[TextIO] = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        facts, checks = inspect(args.root)
    except RootError as exc:
        print(f"cloudinit-azure doctor: {exc}", file=err)
        return BAD_INPUT
    show = render.as_json if args.json else render.as_text
    out.write(show(args.root, facts.os_name, checks))
    return exit_code(checks)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="cloudinit-azure doctor", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
