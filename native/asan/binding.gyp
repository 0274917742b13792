# The addon built with AddressSanitizer and UBSan, for scripts/asan.sh.
{
  'includes': ['../common.gypi'],
  'targets': [
    {
      'target_name': 'dmx_native',
      'sources': ['<!@(cd .. && find src -name "*.cc" | sort | sed "s|^|../|")'],
      'include_dirs': ["<!(node -p \"require('node-addon-api').include_dir\")"],
      'cflags_cc': ['-fsanitize=address,undefined', '-fno-omit-frame-pointer', '-fno-sanitize-recover=undefined', '-O1', '-g'],
      'ldflags': ['-fsanitize=address,undefined'],
    },
  ],
}
