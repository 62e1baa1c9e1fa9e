"""cloud-init datasources of the plug-in (``datasource_pkg_list: [cloudinit_azure.sources]``).

Importing this package (cloud-init does, in every stage, before it validates
user-data) lets cloud-init's schema validation know our config namespaces,
so our settings in customData do not make 25.1 report "degraded".
"""

from cloudinit_azure.modules.cloud_schema import register as _register

_register()
