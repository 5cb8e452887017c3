// Whole-file writes that are all or nothing, and the error they raise when the disk says no.
//
// Run logs and checkpoints are built in memory (h5io.h: MemoryFile) and written here: the
// bytes go to <path>.tmp, which is renamed over <path> only once every byte is written. A
// full disk, a vanished directory or a SIGKILL at any moment leaves <path> as it was (or
// absent, if it never existed) and at most a stale <path>.tmp, which the next run removes.
#pragma once
#include <cstddef>
#include <stdexcept>
#include <string>

namespace mtalab {

// A file could not be written (or a directory created): a full disk, a write error, a
// permission or a path that vanished. Not bad input: the command line exits with code 4.
// The message names the file and the system's reason.
struct IoError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct ReplaceOptions {
  bool durable = false;     // fsync the file before the rename and the directory after it
  bool no_replace = false;  // fail (return false) instead of replacing an existing <path>
  // Fault-injection points (fault_injection.h) are "<fault_name>_write", reached after half
  // of the bytes are written, and "<fault_name>_rename", just before the rename.
  const char* fault_name = "file";
};

// Writes `size` bytes to <path>.tmp and renames it over <path>. IoError naming the file and
// the cause when anything fails; the temporary file is removed then. With no_replace, an
// existing <path> is left untouched and the call returns false.
bool replace_file(const std::string& path, const void* data, size_t size, const ReplaceOptions& opts = {});

// The system's message for an errno value ("No space left on device").
std::string errno_text(int err);

}  // namespace mtalab
