"""Whether init-local may create the account: fstab against the mount table."""

from __future__ import annotations

from cloudinit_azure import early

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
25 22 0:5 / /dev rw shared:2 - devtmpfs udev rw
30 22 8:17 / /mnt rw - ext4 /dev/sdb1 rw
"""


def test_home_on_the_root_file_system_is_fine():
    fstab = "/dev/sda1 / ext4 defaults 0 1\n/dev/sdb1 /mnt auto defaults,nofail 0 2\n"
    assert early.account_blocker("/home/azureuser", fstab, MOUNTINFO) is None


def test_home_on_a_file_system_not_mounted_yet_blocks():
    fstab = "# comment\nLABEL=home /home ext4 defaults,nofail 0 2\n"
    why = early.account_blocker("/home/azureuser", fstab, MOUNTINFO)
    assert why == ("/home (in fstab) is not mounted yet at init-local; "
                   "/home/azureuser lies on it")


def test_the_users_own_home_as_a_mount_point_blocks_too():
    fstab = "UUID=1 /home/azureuser xfs defaults 0 0\n"
    assert early.account_blocker("/home/azureuser/", fstab, MOUNTINFO) is not None


def test_already_mounted_noauto_swap_and_unrelated_entries_do_not_block():
    fstab = ("/dev/sdb1 /mnt ext4 defaults 0 0\n"
             "LABEL=h /home ext4 noauto 0 0\n"
             "/swapfile none swap sw 0 0\n"
             "LABEL=d /data ext4 defaults 0 0\n"
             "LABEL=x /homework ext4 defaults 0 0\n")
    assert early.account_blocker("/home/azureuser", fstab, MOUNTINFO) is None


def test_escaped_blanks_in_mount_points():
    fstab = "LABEL=h /srv/my\\040homes ext4 defaults 0 0\n"
    mounts = MOUNTINFO + "40 22 8:2 / /srv/my\\040homes rw - ext4 /dev/sda2 rw\n"
    assert early.account_blocker("/srv/my homes/u", fstab, MOUNTINFO) is not None
    assert early.account_blocker("/srv/my homes/u", fstab, mounts) is None
