# The addon for a cross build: native/cross/build.sh copies this file into
# native/build-<arch>/ and runs node-gyp there, so each architecture gets
# its own build tree and native/build (the host's) is never touched. Paths
# are relative to that copy, one level below native/ (like native/asan/).
{
  'includes': ['../common.gypi'],
  'targets': [
    {
      'target_name': 'dmx_native',
      'sources': ['<!@(cd .. && find src -name "*.cc" | sort | sed "s|^|../|")'],
      'include_dirs': ["<!(node -p \"require('node-addon-api').include_dir\")"],
    },
  ],
}
