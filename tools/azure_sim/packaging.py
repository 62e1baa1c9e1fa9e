"""Build the Debian package and the Python sdist/wheel; test install and purge.

``python tools/azure_sim/packaging.py deb``: copies the source tree (the files
git knows plus new untracked ones, never ``.venv`` or ``.cache``) into
``build/deb/src``, runs ``dpkg-buildpackage -b`` there (dh-python, pybuild,
``debian/``) and copies ``python3-cloudinit-azure_<version>_all.deb`` to
``dist/``. The work tree stays clean: dpkg-buildpackage writes to the copy
and its parent only.

``... dist``: ``python -m build`` (sdist and wheel) into ``dist/``.

``... install-purge DEB``: installs DEB with dpkg into a throw-away overlay of
the cached VM base tree (``.cache/vm/tree``: Debian 12 with cloud-init),
checks what it installed, purges it and compares the file tree with the one
before the install. Runs in a private mount namespace: the overlay and its
tmpfs vanish with it.
"""

from __future__ import annotations

import argparse
import configparser
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "build"
DIST = REPO / "dist"
PACKAGE = "python3-cloudinit-azure"

# dpkg's own bookkeeping changes with any install; everything else must not.
BOOKKEEPING = ("var/lib/dpkg/", "var/log/dpkg.log", "var/log/apt/", "tmp/",
               "var/cache/debconf/", "var/cache/ldconfig/")


def version() -> str:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    return cfg["metadata"]["version"]


def debian_version() -> str:
    first = (REPO / "debian/changelog").read_text().splitlines()[0]
    match = re.match(r"\S+ \(([^)]+)\)", first)
    if not match:
        raise SystemExit("packaging: cannot read the version from debian/changelog")
    return match.group(1)


def _source_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"],
                         cwd=REPO, capture_output=True, check=True).stdout
    files = [f for f in out.decode().split("\0") if f]
    return [f for f in files if (REPO / f).is_file()
            and not f.startswith(("build/", "dist/", ".cache/", ".venv/"))]


def build_deb() -> Path:
    ver = debian_version()
    if ver.split("-")[0] != version():
        raise SystemExit(f"packaging: debian/changelog says {ver}, setup.cfg says "
                         f"{version()}: add a changelog entry (dch -v {version()})")
    for tool, package in (("dpkg-buildpackage", "dpkg-dev"), ("dh", "debhelper"),
                          ("dh_python3", "dh-python")):
        if shutil.which(tool) is None:
            raise SystemExit(f"packaging: missing '{tool}' (Debian package {package})")
    out = BUILD / "deb"
    shutil.rmtree(out, ignore_errors=True)
    src = out / "src"
    for rel in _source_files():
        dst = src / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dst)
    # Debian's own python3 and tools only: not the venv, not a pyenv shim.
    env = {k: v for k, v in os.environ.items()
           if k in ("HOME", "TERM", "DEB_BUILD_OPTIONS", "SOURCE_DATE_EPOCH")}
    env.update({"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"})
    env["SOURCE_DATE_EPOCH"] = env.get("SOURCE_DATE_EPOCH") or str(
        int((REPO / "debian/changelog").stat().st_mtime))
    subprocess.run(["dpkg-buildpackage", "-b", "-us", "-uc", "--no-pre-clean"],
                   cwd=src, check=True, env=env)
    name = f"{PACKAGE}_{ver}_all.deb"
    DIST.mkdir(exist_ok=True)
    shutil.copy2(out / name, DIST / name)
    print(f"packaging: {DIST / name} ({(DIST / name).stat().st_size} bytes)")
    return DIST / name


def build_dist() -> list[Path]:
    DIST.mkdir(exist_ok=True)
    before = set(DIST.iterdir())
    out = BUILD / "python"
    shutil.rmtree(out, ignore_errors=True)
    src = out / "src"
    for rel in _source_files():
        if rel.startswith("debian/"):
            continue
        dst = src / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dst)
    subprocess.run([sys.executable, "-m", "build", "--outdir", str(DIST), str(src)],
                   check=True)
    made = sorted(set(DIST.iterdir()) - before) or sorted(
        p for p in DIST.iterdir() if p.suffix in (".whl", ".gz"))
    for path in made:
        print(f"packaging: {path} ({path.stat().st_size} bytes)")
    return made


# --- install / purge test ------------------------------------------------------

def manifest(root: Path) -> dict[str, str]:
    """path -> type, mode, owner and content hash (symlink target) of every entry."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            kind = stat.S_IFMT(st.st_mode)
            desc = f"{kind:o} {stat.S_IMODE(st.st_mode):o} {st.st_uid}:{st.st_gid}"
            if stat.S_ISREG(st.st_mode):
                desc += " " + hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                desc += " -> " + os.readlink(path)
            out[rel] = desc
    return out


def diff_manifests(before: dict[str, str], after: dict[str, str]) -> list[str]:
    problems = []
    for rel in sorted(set(before) | set(after)):
        if rel.startswith(BOOKKEEPING) or rel + "/" in BOOKKEEPING:
            continue
        if rel not in after:
            problems.append(f"missing after purge: /{rel}")
        elif rel not in before:
            problems.append(f"left behind: /{rel}")
        elif before[rel] != after[rel]:
            problems.append(f"changed: /{rel}")
    return problems


def _chroot(root: Path, *cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(["chroot", str(root), *cmd], capture_output=True, text=True,
                          check=False, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                            "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"})


def _inside(tree: Path, deb: Path, merged: Path) -> dict[str, Any]:
    """Runs in the private mount namespace with ``merged`` the overlay root."""
    result: dict[str, Any] = {"problems": []}
    problems = result["problems"]
    before = manifest(merged)
    shutil.copy2(deb, merged / "tmp" / deb.name)
    inst = _chroot(merged, "dpkg", "-i", f"/tmp/{deb.name}")
    result["install_log"] = inst.stdout + inst.stderr
    if inst.returncode != 0:
        problems.append(f"dpkg -i failed ({inst.returncode}): {inst.stderr.strip()}")
        return result
    listing = _chroot(merged, "dpkg", "-L", PACKAGE).stdout.split()
    conffiles = _chroot(merged, "dpkg-query", "-W", "-f=${Conffiles}", PACKAGE).stdout
    result["files"] = listing
    result["conffiles"] = conffiles.strip()
    want = ["/usr/lib/python3/dist-packages/cloudinit_azure/sources/DataSourceAzure.py",
            "/usr/lib/python3/dist-packages/cloudinit_azure/schemas/azure_resource_disk.json",
            "/etc/cloud/cloud.cfg.d/91_cloudinit_azure.cfg"]
    want += [f"/usr/lib/python3/dist-packages/cc_azure_{m}.py"
             for m in ("ready", "resource_disk", "kernel", "network")]
    for path in want:
        if path not in listing:
            problems.append(f"not installed: {path}")
    if "/etc/cloud/cloud.cfg.d/91_cloudinit_azure.cfg" not in conffiles:
        problems.append("91_cloudinit_azure.cfg is not a conffile")
    imp = _chroot(merged, "python3", "-c",
                  "import cloudinit_azure.sources.DataSourceAzure as d, cc_azure_ready, "
                  "cc_azure_resource_disk, cc_azure_kernel, cc_azure_network; "
                  "print(d.get_datasource_list)")
    if imp.returncode != 0:
        problems.append(f"import in the installed system failed: {imp.stderr.strip()}")
    pyc = [p for p in (merged / "usr/lib/python3/dist-packages/cloudinit_azure").rglob(
        "*.pyc")]
    result["pyc_after_install"] = len(pyc)
    purge = _chroot(merged, "dpkg", "--purge", PACKAGE)
    result["purge_log"] = purge.stdout + purge.stderr
    if purge.returncode != 0:
        problems.append(f"dpkg --purge failed ({purge.returncode}): {purge.stderr.strip()}")
    (merged / "tmp" / deb.name).unlink()
    status = _chroot(merged, "dpkg-query", "-W", "-f=${db:Status-Abbrev}", PACKAGE)
    if status.returncode == 0 and status.stdout.strip() not in ("", "un"):
        problems.append(f"dpkg still knows the package: {status.stdout.strip()}")
    after = manifest(merged)
    problems += diff_manifests(before, after)
    result["entries_before"] = len(before)
    result["entries_after"] = len(after)
    return result


def install_purge(deb: Path, tree: Path) -> dict[str, Any]:
    """Install and purge ``deb`` in an overlay of ``tree``; return the findings."""
    if os.geteuid() != 0:
        raise SystemExit("packaging: the install/purge test needs root")
    if not (tree / "usr/bin/cloud-init").exists():
        raise SystemExit(f"packaging: {tree} has no cloud-init: run 'make vm-image'")
    scratch = tree.parent / "ovl"
    scratch.mkdir(exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "tools")
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-m",
         "azure_sim.packaging", "_inside", str(deb.resolve()), str(tree), str(scratch)],
        capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"packaging: install/purge sandbox failed:\n{proc.stderr}")
    return json.loads(proc.stdout)


def _inside_main(deb: str, tree: str, scratch: str) -> int:
    from azure_sim.vmimage import overlay

    merged = overlay(Path(tree), Path(scratch))
    print(json.dumps(_inside(Path(tree), Path(deb), merged)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="packaging", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("deb")
    sub.add_parser("dist")
    ip = sub.add_parser("install-purge")
    ip.add_argument("deb")
    ip.add_argument("--tree", default=None)
    inner = sub.add_parser("_inside")
    inner.add_argument("deb")
    inner.add_argument("tree")
    inner.add_argument("scratch")
    args = parser.parse_args(argv)
    if args.cmd == "deb":
        build_deb()
    elif args.cmd == "dist":
        build_dist()
    elif args.cmd == "_inside":
        return _inside_main(args.deb, args.tree, args.scratch)
    else:
        from azure_sim import vmimage

        tree = Path(args.tree) if args.tree else vmimage.build_tree()
        result = install_purge(Path(args.deb), tree)
        for key in ("entries_before", "entries_after", "conffiles", "pyc_after_install"):
            print(f"{key}: {result.get(key)}")
        for problem in result["problems"]:
            print(f"PROBLEM: {problem}")
        return 1 if result["problems"] else 0
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
