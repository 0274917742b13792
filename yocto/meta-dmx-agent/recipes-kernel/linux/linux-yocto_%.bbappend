# The kernel options dmx-agent needs (linux-yocto/dmx-agent.cfg), merged into
# every linux-yocto kernel's configuration: kernel-yocto.bbclass merges each
# .cfg in SRC_URI over the BSP's configuration, and do_kernel_configcheck
# warns when an option does not end up as the fragment asks.
# Other kernels: yocto/README.md, "The kernel".
FILESEXTRAPATHS:prepend := "${THISDIR}/${PN}:"
SRC_URI += "file://dmx-agent.cfg"
