SUMMARY = "Zero-copy DVB demux to V4L2 decoder agent for set-top boxes, health over MQTT"
DESCRIPTION = "dmx-agent keeps DVB demux mmap buffer pools flowing to V4L2 decoders as \
DMABUFs, diagnoses every failing ioctl and reports buffer health and errors to the \
fleet over MQTT. It runs as a systemd service under its own user."
SECTION = "multimedia"

# dmx-agent is Apache-2.0 (its LICENSE, which npm packs always);
# DMX_AGENT_NPM_LICENSE and the dependencies' license files come from the
# generated include below.
LICENSE = "Apache-2.0 & ${DMX_AGENT_NPM_LICENSE}"
LIC_FILES_CHKSUM = "file://LICENSE;md5=3b83ef96387f14655fc854ddc3c6bd57"

# The npm package of this version, as `npm pack` makes it in the dmx-agent
# repository: JavaScript compiled (dist/), the addon's C++ sources (native/),
# the default config and the systemd unit (config/, deploy/). npm.bbclass runs
# no `prepare` and no TypeScript compiler, so the package, not a git checkout,
# is the source. By default it lies beside this recipe (dmx-agent/); a release
# server works as well, from a bbappend or local.conf:
#   DMX_AGENT_PACKAGE = "https://releases.example.com/dmx-agent-${PV}.tgz;sha256sum=<sha256>"
DMX_AGENT_PACKAGE ?= "file://dmx-agent-${PV}.tgz"

# Unpacked into ${S} (the default, .../${BP}) on every release: npm.bbclass
# reads package.json and npm-shrinkwrap.json there and the dependencies under
# ${S}/node_modules (added to SRC_URI by the include).
SRC_URI = "\
    ${DMX_AGENT_PACKAGE};subdir=${BP};striplevel=1 \
    file://npm-shrinkwrap.json;subdir=${BP} \
"

# The production dependencies, one checksummed https:// entry each, and their
# licenses. Generated from package-lock.json by yocto/update-npm-sources.mjs
# (with dmx-agent/npm-shrinkwrap.json): never edit it by hand.
require dmx-agent-npm-sources.inc

inherit npm systemd useradd

# The addon (native/) is compiled from source at install time: the package's
# "install" script runs node-gyp (the copy bundled with nodejs-native's npm;
# node-gyp is only a devDependency) with npm.bbclass's cross settings, and the
# make files node-gyp writes compile with OE's CC, CXX, CFLAGS and CXXFLAGS.
#
# 32-bit ARM: the addon must see the same 64-bit time_t and off_t as the
# kernel headers' time64 ioctls and glibc expect. OE-core already puts
# -D_TIME_BITS=64 -D_FILE_OFFSET_BITS=64 into CC for 32-bit glibc targets
# (GLIBC_64BIT_TIME_FLAGS, conf/distro/include/time64.inc, included by
# defaultsetup.conf from scarthgap on), and the addon's native/common.gypi adds
# them itself for 32-bit targets, so nothing is needed here; a 32-bit time_t
# build fails to compile (static_assert in native/src/sys/sys.h). musl has
# 64-bit time_t throughout.
#
# node-gyp compiles inside ${NPM_BUILD}, which DEBUG_PREFIX_MAP (${S}, ${B})
# does not cover: map it too, or the debug information names the build
# directory (buildpaths QA, an error from wrynose on).
DEBUG_PREFIX_MAP:append = " -ffile-prefix-map=${NPM_BUILD}=${TARGET_DBGSRC_DIR}"

# A system user of its own, in group video: udev gives /dev/dvb/* and
# /dev/video* to group video (SUBSYSTEM=="dvb" and =="video4linux" in
# systemd's and eudev's 50-udev-default.rules), and base-passwd creates it.
# The unit also names it (User=dmx-agent, SupplementaryGroups=video).
USERADD_PACKAGES = "${PN}"
USERADD_PARAM:${PN} = "--system --user-group --groups video --home-dir ${localstatedir}/lib/dmx-agent --no-create-home --shell ${base_sbindir}/nologin dmx-agent"

SYSTEMD_SERVICE:${PN} = "dmx-agent.service"
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

# The production configuration: the firmware team's to edit (a bbappend
# replacing it), kept across package upgrades once changed on the box. The
# MQTT config.set override goes to /var/lib/dmx-agent (the unit's
# StateDirectory), not here: /etc may be read-only.
CONFFILES:${PN} = "${sysconfdir}/dmx-agent/config.json"

do_install:append() {
	install -d ${D}${systemd_system_unitdir}
	install -m 0644 ${S}/deploy/systemd/dmx-agent.service ${D}${systemd_system_unitdir}/dmx-agent.service

	# Readable by the agent's group only: the file may hold mqtt.password.
	install -d -m 0750 ${D}${sysconfdir}/dmx-agent
	install -m 0640 ${S}/deploy/config/config.json ${D}${sysconfdir}/dmx-agent/config.json
	chgrp dmx-agent ${D}${sysconfdir}/dmx-agent ${D}${sysconfdir}/dmx-agent/config.json

	# pino's release helper: never run on the receiver, and its #!/bin/bash
	# would make bash a run-time dependency (file-rdeps QA error).
	rm -f ${D}${nonarch_libdir}/node_modules/dmx-agent/node_modules/pino/inc-version.sh
}
