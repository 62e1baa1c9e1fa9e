"""azure-sim: an offline Azure platform simulator that boots real cloud-init."""
