"""Build the Debian package and the Python sdist/wheel; test install and purge.

``python tools/azure_sim/packaging.py deb``: copies the source tree (the files
git knows plus new untracked ones, never ``.venv`` or ``.cache``) into
``build/deb/src``, runs ``dpkg-buildpackage`` there (source and binary:
dh-python, pybuild, ``debian/``) and copies
``python3-cloudinit-azure_<version>_all.deb`` to ``dist/``. The work tree
stays clean: dpkg-buildpackage writes to the copy and its parent only.

``... lintian``: lintian at its default level on the build's .changes (the
source package and the .deb); any tag is a failure.

``... old-deb COMMIT``: builds the package of an older commit (``git
archive``) into ``.cache/vm/old-debs/`` once, for the upgrade tests.

``... dist``: ``python -m build`` (sdist and wheel) into ``dist/``.

``... install-purge DEB [--old OLD]``: installs DEB with dpkg (over OLD, an
upgrade, when given) into a throw-away overlay of the cached VM base tree
(``.cache/vm/<release>/tree``: Debian with cloud-init), checks what it
installed, removes it (cloud-init's configuration must no longer name the
plug-in), purges it and compares the file tree with the one before. Runs in a
private mount namespace: the overlay and its
tmpfs vanish with it.
"""

from __future__ import annotations

import argparse
import configparser
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

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


def debian_version(root: Path = REPO) -> str:
    first = (root / "debian/changelog").read_text().splitlines()[0]
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


def build_deb(src_root: Path = REPO, out: Path = BUILD / "deb",
              dest: Optional[Path] = DIST) -> Path:
    """dpkg-buildpackage a copy of ``src_root``; the .deb lands in ``out`` (and ``dest``)."""
    ver = debian_version(src_root)
    if src_root == REPO and ver.split("-")[0] != version():
        raise SystemExit(f"packaging: debian/changelog says {ver}, setup.cfg says "
                         f"{version()}: add a changelog entry (dch -v {version()})")
    for tool, package in (("dpkg-buildpackage", "dpkg-dev"), ("dh", "debhelper"),
                          ("dh_python3", "dh-python")):
        if shutil.which(tool) is None:
            raise SystemExit(f"packaging: missing '{tool}' (Debian package {package})")
    shutil.rmtree(out, ignore_errors=True)
    src = out / "src"
    if src_root == REPO:
        for rel in _source_files():
            dst = src / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dst)
    else:
        shutil.copytree(src_root, src, symlinks=True)
    # Debian's own python3 and tools only: not the venv, not a pyenv shim.
    env = {k: v for k, v in os.environ.items()
           if k in ("HOME", "TERM", "DEB_BUILD_OPTIONS", "SOURCE_DATE_EPOCH")}
    env.update({"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"})
    env["SOURCE_DATE_EPOCH"] = env.get("SOURCE_DATE_EPOCH") or str(
        int((src_root / "debian/changelog").stat().st_mtime))
    subprocess.run(["dpkg-buildpackage", "--build=full", "-us", "-uc", "--no-pre-clean"],
                   cwd=src, check=True, env=env)
    name = f"{PACKAGE}_{ver}_all.deb"
    if dest is None:
        return out / name
    dest.mkdir(exist_ok=True)
    shutil.copy2(out / name, dest / name)
    print(f"packaging: {dest / name} ({(dest / name).stat().st_size} bytes)")
    return dest / name


def lintian(out: Path = BUILD / "deb") -> list[str]:
    """lintian's tags (default level) for the last build's source and binary package."""
    if shutil.which("lintian") is None:
        raise SystemExit("packaging: missing 'lintian' (Debian package lintian)")
    changes = sorted(out.glob("*.changes"))
    if not changes:
        raise SystemExit(f"packaging: no .changes in {out}: run 'make deb' first")
    proc = subprocess.run(["lintian", "--allow-root", str(changes[-1])], capture_output=True,
                          text=True, check=False)
    return [line for line in proc.stdout.splitlines() if line[:2] in ("E:", "W:")]


def old_deb(commit: str) -> Path:
    """The package built from an older ``commit`` (cached by commit)."""
    from azure_sim import deps

    cache = deps.CACHE / "vm" / "old-debs" / commit
    cache.mkdir(parents=True, exist_ok=True)
    # Two VM-tier workers may ask for the same build: one builds, the other waits.
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = sorted(cache.glob(f"{PACKAGE}_*_all.deb"))
        if found:
            return found[-1]
        return _build_old_deb(commit, cache)


def _build_old_deb(commit: str, cache: Path) -> Path:
    work = BUILD / f"old-deb-{commit[:12]}"
    shutil.rmtree(work, ignore_errors=True)
    (work / "tree").mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=REPO,
                             capture_output=True, check=False)
    if archive.returncode != 0:
        raise SystemExit(f"packaging: cannot read commit {commit} from git: "
                         f"{archive.stderr.decode().strip()} (a shallow clone?)")
    subprocess.run(["tar", "-x", "-C", str(work / "tree")], input=archive.stdout, check=True)
    deb = build_deb(work / "tree", work / "out", dest=None)
    shutil.copy2(deb, cache / f"{deb.name}.new")
    os.replace(cache / f"{deb.name}.new", cache / deb.name)
    shutil.rmtree(work, ignore_errors=True)
    return cache / deb.name


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


WIRING = "/etc/cloud/cloud.cfg.d/91_cloudinit_azure.cfg"
WIRING_TARGET = "/usr/lib/cloudinit-azure/cloud.cfg.d/91_cloudinit_azure.cfg"
# cloud-init's merged configuration as init-local reads it (files, /run, kernel command line)
CLOUD_CFG_PROBE = ("from cloudinit import stages; import json; "
                   "print(json.dumps(stages.fetch_base_config("
                   "*(['/run/cloud-init'] if 'run_dir' in "
                   "stages.fetch_base_config.__code__.co_varnames else []))"
                   ".get('datasource_pkg_list')))")


def _dpkg(merged: Path, problems: list[str], what: str, *args: str) -> str:
    proc = _chroot(merged, "dpkg", *args)
    if proc.returncode != 0:
        problems.append(f"{what} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout + proc.stderr


def _check_installed(merged: Path, result: dict[str, Any]) -> None:
    problems = result["problems"]
    listing = _chroot(merged, "dpkg", "-L", PACKAGE).stdout.split()
    conffiles = _chroot(merged, "dpkg-query", "-W", "-f=${Conffiles}", PACKAGE).stdout
    result["files"] = listing
    result["conffiles"] = conffiles.strip()
    want = ["/usr/lib/python3/dist-packages/cloudinit_azure/sources/DataSourceAzure.py",
            "/usr/lib/python3/dist-packages/cloudinit_azure/schemas/azure_resource_disk.json",
            WIRING, WIRING_TARGET]
    want += [f"/usr/lib/python3/dist-packages/cc_azure_{m}.py"
             for m in ("ready", "resource_disk", "kernel", "network")]
    problems += [f"not installed: {path}" for path in want if path not in listing]
    link = merged / WIRING.lstrip("/")
    target = os.readlink(link) if link.is_symlink() else ""
    if not (target and (merged / target.lstrip("/") if target.startswith("/")
                        else link.parent / target).is_file()):
        problems.append(f"{WIRING} is not a working symlink ({target or 'not a link'})")
    if conffiles.strip():
        problems.append(f"conffiles (apt remove would keep them): {conffiles.strip()}")
    leftovers = sorted(p.name for p in link.parent.glob("91_cloudinit_azure.cfg.dpkg-*"))
    problems += [f"left over in cloud.cfg.d: {name}" for name in leftovers]
    cfg = _chroot(merged, "python3", "-c", CLOUD_CFG_PROBE)
    result["pkg_list_installed"] = cfg.stdout.strip()
    if "cloudinit_azure.sources" not in cfg.stdout:
        problems.append(f"installed, cloud-init's datasource_pkg_list is {cfg.stdout.strip()} "
                        f"{cfg.stderr.strip()[-300:]}")
    imp = _chroot(merged, "python3", "-c",
                  "import cloudinit_azure.sources.DataSourceAzure as d, cc_azure_ready, "
                  "cc_azure_resource_disk, cc_azure_kernel, cc_azure_network; "
                  "print(d.get_datasource_list)")
    if imp.returncode != 0:
        problems.append(f"import in the installed system failed: {imp.stderr.strip()}")
    result["pyc_after_install"] = len(list(
        (merged / "usr/lib/python3/dist-packages/cloudinit_azure").rglob("*.pyc")))


def _inside(tree: Path, deb: Path, merged: Path, old: Optional[Path] = None) -> dict[str, Any]:
    """Runs in the private mount namespace with ``merged`` the overlay root.

    (old ->) install -> checks -> remove -> cloud-init no longer names the
    plug-in -> purge -> the tree is what it was before.
    """
    result: dict[str, Any] = {"problems": []}
    problems = result["problems"]
    before = manifest(merged)
    for pkg in ([old] if old else []) + [deb]:
        shutil.copy2(pkg, merged / "tmp" / pkg.name)
        result.setdefault("install_log", "")
        result["install_log"] += _dpkg(merged, problems, f"dpkg -i {pkg.name}", "-i",
                                       f"/tmp/{pkg.name}")
        (merged / "tmp" / pkg.name).unlink()
        if problems:
            return result
    _check_installed(merged, result)
    result["remove_log"] = _dpkg(merged, problems, "dpkg --remove", "--remove", PACKAGE)
    cfg = _chroot(merged, "python3", "-c", CLOUD_CFG_PROBE)
    result["pkg_list_removed"] = cfg.stdout.strip()
    if cfg.returncode != 0 or "cloudinit_azure" in cfg.stdout:
        problems.append(f"removed, cloud-init's datasource_pkg_list is {cfg.stdout.strip()} "
                        f"{cfg.stderr.strip()[-300:]}")
    if (merged / WIRING.lstrip("/")).exists() or (merged / WIRING.lstrip("/")).is_symlink():
        problems.append(f"removed, {WIRING} is still there")
    result["purge_log"] = _dpkg(merged, problems, "dpkg --purge", "--purge", PACKAGE)
    status = _chroot(merged, "dpkg-query", "-W", "-f=${db:Status-Abbrev}", PACKAGE)
    if status.returncode == 0 and status.stdout.strip() not in ("", "un"):
        problems.append(f"dpkg still knows the package: {status.stdout.strip()}")
    after = manifest(merged)
    problems += diff_manifests(before, after)
    result["entries_before"] = len(before)
    result["entries_after"] = len(after)
    return result


def install_purge(deb: Path, tree: Path, old: Optional[Path] = None) -> dict[str, Any]:
    """(Upgrade from ``old``,) install, remove and purge ``deb`` in an overlay of ``tree``."""
    if os.geteuid() != 0:
        raise SystemExit("packaging: the install/purge test needs root")
    if not (tree / "usr/bin/cloud-init").exists():
        raise SystemExit(f"packaging: {tree} has no cloud-init: run 'make vm-image'")
    scratch = tree.parent / "ovl"
    scratch.mkdir(exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "tools")
    cmd = ["unshare", "--mount", "--propagation", "private", sys.executable, "-m",
           "azure_sim.packaging", "_inside", str(deb.resolve()), str(tree), str(scratch)]
    if old:
        cmd += ["--old", str(old.resolve())]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"packaging: install/purge sandbox failed:\n{proc.stderr}")
    return json.loads(proc.stdout)


def _inside_main(deb: str, tree: str, scratch: str, old: Optional[str]) -> int:
    from azure_sim.vmimage import overlay

    merged = overlay(Path(tree), Path(scratch))
    print(json.dumps(_inside(Path(tree), Path(deb), merged, Path(old) if old else None)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="packaging", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("deb")
    sub.add_parser("dist")
    sub.add_parser("lintian")
    od = sub.add_parser("old-deb")
    od.add_argument("commit")
    ip = sub.add_parser("install-purge")
    ip.add_argument("deb")
    ip.add_argument("--tree", default=None)
    ip.add_argument("--old", default=None, help="install this older .deb first (upgrade)")
    inner = sub.add_parser("_inside")
    inner.add_argument("deb")
    inner.add_argument("tree")
    inner.add_argument("scratch")
    inner.add_argument("--old", default=None)
    args = parser.parse_args(argv)
    if args.cmd == "deb":
        build_deb()
    elif args.cmd == "dist":
        build_dist()
    elif args.cmd == "lintian":
        tags = lintian()
        print("\n".join(tags) or "packaging: lintian clean")
        return 1 if tags else 0
    elif args.cmd == "old-deb":
        print(old_deb(args.commit))
    elif args.cmd == "_inside":
        return _inside_main(args.deb, args.tree, args.scratch, args.old)
    else:
        from azure_sim import vmimage

        tree = Path(args.tree) if args.tree else vmimage.build_tree()
        result = install_purge(Path(args.deb), tree, Path(args.old) if args.old else None)
        for key in ("entries_before", "entries_after", "conffiles", "pyc_after_install"):
            print(f"{key}: {result.get(key)}")
        for problem in result["problems"]:
            print(f"PROBLEM: {problem}")
        return 1 if result["problems"] else 0
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
