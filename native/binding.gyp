{
  'includes': ['common.gypi'],
  'targets': [
    {
      'target_name': 'dmx_native',
      # Every source under src/; one file per kernel object (see README).
      'sources': ['<!@(find src -name "*.cc" | sort)'],
      'include_dirs': ["<!(node -p \"require('node-addon-api').include_dir\")"],
    },
  ],
}
