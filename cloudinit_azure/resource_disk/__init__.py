"""Azure resource (temporary) disk: discover, probe, decide, plan, execute.

Azure ships the resource disk NTFS-formatted, empty but for a warning file,
and may hand over a fresh one after a resize or redeploy. We reformat it only
when it is provably empty, and mount it on every boot. One module per stage:

- :mod:`.settings`: the ``azure_resource_disk`` settings, defaults from the schema;
- :mod:`.machine`: the seam (root path, runner, clock, mknod) every stage takes;
- :mod:`.discover`: which disk (configured, udev link, VMBus ids, NVMe);
- :mod:`.probe`: what is on it (sysfs partitions, blkid, NTFS root, mounts);
- :mod:`.decide`: what to do (pure: the safety table);
- :mod:`.plan`: how, as typed steps (pure); :mod:`.fstab`: fstab edits (pure);
- :mod:`.execute`: running the steps, the instance marker, and :func:`setup`.

Nothing here imports cloud-init. The names below are the package's API.
"""

from cloudinit_azure.report import ResourceDiskError  # noqa: F401
from cloudinit_azure.resource_disk.decide import (  # noqa: F401
    AZURE_NTFS_FILES,
    LINUX_FS_GUID,
    MSR_GUID,
    Decision,
    DiskLayout,
    Marker,
    Partition,
    decide,
    instance_state,
    ntfs_candidate,
    user_files,
)
from cloudinit_azure.resource_disk.discover import (  # noqa: F401
    CLOUD_LINK,
    Discovered,
    discover,
    discover_once,
)
from cloudinit_azure.resource_disk.execute import (  # noqa: F401
    PARTITION_TIMEOUT,
    README_NAME,
    README_TEXT,
    Outcome,
    read_marker,
    setup,
    write_marker,
)
from cloudinit_azure.resource_disk.fstab import (  # noqa: F401
    FSTAB_COMMENT,
    SWAP_COMMENT,
    remove_fstab,
    update_fstab,
)
from cloudinit_azure.resource_disk.machine import (  # noqa: F401
    FSTAB_PATH,
    MARKER_PATH,
    MIB,
    Machine,
)
from cloudinit_azure.resource_disk.plan import (  # noqa: F401
    Chmod,
    Command,
    FindPartition,
    FstabMount,
    FstabRemove,
    FstabSwap,
    MakeDir,
    MakeFileSystem,
    Mount,
    Remove,
    Step,
    WriteReadme,
    mkfs_argv,
    plan,
    plan_format,
    plan_mount,
    plan_swap,
    swap_size_mib,
    swapfile_path,
)
from cloudinit_azure.resource_disk.probe import (  # noqa: F401
    NtfsListing,
    SysPartition,
    ensure_node,
    is_blank,
    list_ntfs,
    parse_blkid_export,
    probe,
    read_layout,
    sysfs_partitions,
)
from cloudinit_azure.resource_disk.settings import (  # noqa: F401
    NAMESPACE,
    DiskSettings,
    from_settings,
    load_settings,
)
