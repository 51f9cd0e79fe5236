#pragma once
// Running the xntk program from a test: exit code, stdout and stderr of one command line.

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <string>
#include <vector>

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

/// Starts `xntk ARGS` in `cwd` without a shell, every signal at its default but `ignored` (0: none), as
/// nohup or a shell's `trap '' HUP` would start it.
inline pid_t spawn(const std::vector<std::string>& args, const TempDir& cwd, int ignored = 0) {
  const pid_t pid = fork();
  if (pid != 0) return pid;
  // the child: only async-signal-safe calls until exec
  if (chdir(cwd.path().c_str()) != 0) _exit(127);
  const int null = open("/dev/null", O_RDWR);
  dup2(null, 0);
  dup2(null, 1);
  dup2(null, 2);
  for (int s = 1; s < NSIG; ++s) signal(s, SIG_DFL);
  if (ignored) signal(ignored, SIG_IGN);
  std::vector<char*> argv = {const_cast<char*>(XNTK_CLI)};
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  execv(XNTK_CLI, argv.data());
  _exit(127);
}

}  // namespace xntk::test
