// Error kinds. InputError is for bad input a user can fix (options, config files, data,
// checkpoints): the command line prints its message on one line and exits with code 2.
// Programming and shape errors inside ops are std::invalid_argument / std::logic_error.
#pragma once
#include <stdexcept>
#include <string>

namespace mtalab {

struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace mtalab
