"""One version everywhere: a bump in one place alone fails here, not in make deb."""

from azure_sim import packaging
from cloudinit_azure import __version__


def test_changelog_setup_cfg_and_the_package_agree():
    assert packaging.debian_version().split("-")[0] == packaging.version() == __version__
