# Shared by native/binding.gyp (the addon), native/asan/binding.gyp (the
# same sources built with AddressSanitizer and UBSan) and
# native/cross/binding.gyp (cross builds for the boards).
{
  'target_defaults': {
    'defines': ['NAPI_VERSION=8', 'NODE_ADDON_API_DISABLE_DEPRECATED', 'NAPI_CPP_EXCEPTIONS'],
    'cflags!': ['-fno-exceptions'],
    'cflags_cc!': ['-fno-exceptions', '-fno-rtti'],
    'cflags_cc': ['-std=c++17', '-Wall', '-Wextra', '-Wno-unused-parameter', '-Wno-missing-field-initializers', '-fvisibility=hidden'],
    'libraries': ['-lpthread'],
    'conditions': [
      # 32-bit targets use a 64-bit time_t, as Yocto builds all 32-bit ARM
      # userspace (meta/conf/distro/include/time64.inc): v4l2_buffer and
      # v4l2_event embed a timeval/timespec, so their layout and the ioctl
      # numbers follow time_t (see native/cross/README.md). Yocto passes the
      # same flags in $CC; repeating them is harmless. src/sys/sys.h refuses
      # a build without them.
      ['OS=="linux" and target_arch in ["arm", "ia32", "mips", "mipsel", "ppc"]', {
        'defines': ['_TIME_BITS=64', '_FILE_OFFSET_BITS=64'],
      }],
      # GCC's note that std containers pass differently than GCC < 7.1 did:
      # nothing here links against code that old.
      ['target_arch=="arm"', {
        'cflags_cc': ['-Wno-psabi'],
      }],
    ],
  },
}
