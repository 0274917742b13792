#include "ts_source.h"

#include "sim_sys.h"
#include "ts_file.h"
#include "ts_synthetic.h"

namespace dmx {
namespace sim {

std::unique_ptr<TsSource> MakeTsSource(const SimSourceConfig& config) {
  if (config.kind == SimSourceConfig::Kind::kFile)
    return std::make_unique<FileTsSource>(config.path, config.bitrate);
  std::vector<SimProgramConfig> programs = config.programs;
  if (programs.empty()) programs = SimConfig::DefaultPrograms();
  return std::make_unique<SyntheticTsSource>(programs, config.bitrate);
}

}  // namespace sim
}  // namespace dmx
