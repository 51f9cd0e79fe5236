#pragma once
// Running the xntk program from a test: exit code, stdout and stderr of one command line.

#include <sys/wait.h>

#include <cstdlib>
#include <string>

#include "files.hpp"

namespace xntk::test {

struct Run {
  int code = -1;
  std::string out, err;
};

/// Runs `xntk ARGS` from `cwd`, capturing stdout and stderr in files outside it.
inline Run run(const std::string& args, const TempDir& cwd) {
  TempDir io("cli-io");
  // killed after two minutes: a run that blocks (on a FIFO, say) fails instead of hanging the suite
  const std::string cmd = "cd '" + cwd.path().string() + "' && timeout -s KILL 120 '" + std::string(XNTK_CLI) + "' " +
                          args + " > '" + (io / "out") + "' 2> '" + (io / "err") + "' < /dev/null";
  const int status = std::system(cmd.c_str());
  Run r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  r.out = read_bytes(io / "out");
  r.err = read_bytes(io / "err");
  return r;
}

}  // namespace xntk::test
