// Checks that a figure was drawn: a PNG's size from its header, and its number of distinct
// colours as matplotlib's own reader sees it (not the code that drew it).
#pragma once
#include <cstdlib>
#include <filesystem>
#include <string>
#include <utility>

#include "process_util.h"

namespace mtalab::testing {

// Width and height from a PNG's IHDR chunk (0, 0 when it is not a PNG).
inline std::pair<int, int> png_size(const std::string& bytes) {
  if (bytes.size() < 24 || bytes.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0) return {0, 0};
  auto be32 = [&](size_t at) {
    return (int)((unsigned char)bytes[at] << 24 | (unsigned char)bytes[at + 1] << 16 | (unsigned char)bytes[at + 2] << 8 |
                 (unsigned char)bytes[at + 3]);
  };
  return {be32(16), be32(20)};
}

// Distinct colours in a PNG, read by matplotlib's own reader (not the code that drew it).
inline int colours(const std::filesystem::path& png) {
  const std::filesystem::path out = png.string() + ".colours";
  const std::string cmd = "/usr/bin/python3 -c \"import sys, numpy, matplotlib.image as m; a = m.imread(sys.argv[1]); "
                          "print(len(numpy.unique(a.reshape(-1, a.shape[-1]), axis=0)))\" '" +
                          png.string() + "' > '" + out.string() + "' 2>&1";
  if (std::system(cmd.c_str()) != 0) return -1;
  return std::atoi(bytes_of(out.string()).c_str());
}

}  // namespace mtalab::testing
