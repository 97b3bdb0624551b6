#!/bin/sh
# Run by busybox acpid on an ACPI power-button press (QMP system_powerdown).
echo "KUMO-POWEROFF" >/dev/console
sync
poweroff -f
