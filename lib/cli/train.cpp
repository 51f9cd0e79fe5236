// `xntk train`: load the model, weights and data, check them, train with PyTorch's optimiser rules (the
// network or its linearisation), write one JSON line per logged step as it happens, and the trained weights
// at the end (not at all when training fails: the log keeps the steps so far).

#include "xntk/train.hpp"

#include <sys/stat.h>

#include <fstream>
#include <iostream>
#include <optional>

#include "cli/commands.hpp"
#include "cli/inputs.hpp"
#include "io/file.hpp"
#include "xntk/io.hpp"

namespace xntk::cli {
namespace {

/// The log file, written line by line under its own name (a failed run keeps what it logged); an existing
/// target that is not a regular file (a FIFO would block) is refused, /dev/null is allowed.
std::ofstream open_log(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode) && !detail::is_null_device(path))
    throw Error(path + " (--log): is not a regular file; expected a log file name (or /dev/null)");
  std::ofstream out(path, std::ios::trunc);
  if (!out) throw Error(path + " (--log): cannot write: " + detail::system_reason());
  return out;
}

template <class T>
void run(const TrainArgs& args) {
  // the outputs first: an unwritable destination fails now, not after the training
  detail::AtomicFile out(args.output);
  std::optional<std::ofstream> log;
  if (!args.log.empty()) log = open_log(args.log);

  Sequential<T> model = load_model<T>(args.model, args.weights, args.seed);
  const Loss kind = args.loss == "cross_entropy" ? Loss::cross_entropy : Loss::mse;
  const Tensor<T> x = read_data<T>(args.x, "--x"), y = read_targets<T>(args.y, "--y");
  check_batch(model.input_shape(), x.shape(), args.x + " (--x)");
  // targets checked against the outputs once, so that errors name the file
  loss<T>(kind, model.forward(x), y, args.y + " (--y)");
  std::optional<Tensor<T>> xt, yt, probe;
  if (!args.x_test.empty()) {
    xt = read_data<T>(args.x_test, "--x-test");
    yt = read_targets<T>(args.y_test, "--y-test");
    check_batch(model.input_shape(), xt->shape(), args.x_test + " (--x-test)");
    loss<T>(kind, model.forward(*xt), *yt, args.y_test + " (--y-test)");
  }
  if (!args.probe.empty()) {
    probe = read_data<T>(args.probe, "--probe");
    check_batch(model.input_shape(), probe->shape(), args.probe + " (--probe)");
  }

  TrainOptions opt{.loss = kind,
                   .optimizer = {.kind = args.optimizer == "adam" ? Optimizer::Kind::adam : Optimizer::Kind::sgd,
                                 .lr = args.lr,
                                 .weight_decay = args.weight_decay,
                                 .momentum = args.momentum},
                   .steps = args.steps,
                   .epochs = args.epochs,
                   .batch_size = args.batch_size,
                   .shuffle = args.shuffle,
                   .shuffle_seed = args.shuffle_seed,
                   .transform = {.alpha = args.alpha, .center = args.center},
                   .linearized = args.linearized,
                   .log_every = args.log_every,
                   .ntk_every = probe ? args.ntk_every : 0,
                   .threads = args.threads};
  TrainData<T> data{.x = x, .y = y};
  if (xt) {
    data.x_test = TensorRef<T>(*xt);
    data.y_test = TensorRef<T>(*yt);
  }
  if (probe) data.probe = TensorRef<T>(*probe);
  try {
    train(model, data, opt, [&](const StepLog& l) {
      if (!log) return;
      *log << log_line(l) << '\n';
      log->flush();  // a reader following the file sees each step as it is logged
      if (!*log) throw Error(args.log + " (--log): write failed: " + detail::system_reason());
    });
  } catch (const Error& e) {
    throw Error(std::string(e.what()) + (log ? "; " + args.log + " keeps the steps logged so far" : "") +
                "; no weights written");
  }
  std::vector<NamedTensor<T>> trained;
  for (const auto& p : model.named_parameters()) trained.push_back({p.name, *p.tensor});
  write_safetensors(out.stream(), trained,
                    {{"trained_by", "xntk train"},
                     {"steps", std::to_string(args.steps)},
                     {"epochs", std::to_string(args.epochs)},
                     {"linearized", args.linearized ? "true" : "false"}});
  out.commit();
}

}  // namespace

void train(const TrainArgs& args) {
  if (args.dtype == "float32")
    run<float>(args);
  else
    run<double>(args);
}

}  // namespace xntk::cli
