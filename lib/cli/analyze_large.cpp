// `xntk analyze --extremes` / `--top k`: λmax, λmin and the top eigenpairs of a kernel too large for a dense
// eigensolver, by Lanczos iterations (Spectra's implicitly restarted SymEigsSolver) whose matrix-vector
// products read the .npy in place through a memory map: nothing of the size of the kernel is allocated, and
// the pages are the operating system's to keep or drop.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <vector>

#include "cli/commands.hpp"
#include "io/file.hpp"
#include "xntk/io.hpp"

#ifdef XNTK_HAVE_SPECTRA
#include <Spectra/SymEigsSolver.h>
#endif

namespace xntk::cli {

#ifdef XNTK_HAVE_SPECTRA
namespace {

/// A read-only memory map of a whole file.
class Mapped {
 public:
  explicit Mapped(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error(path + ": cannot read: " + detail::system_reason());
    struct stat st {};
    fstat(fd, &st);
    size_ = static_cast<size_t>(st.st_size);
    data_ = size_ ? mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0) : nullptr;
    ::close(fd);
    if (data_ == MAP_FAILED) throw Error(path + ": cannot map the file: " + detail::system_reason());
    if (data_) madvise(data_, size_, MADV_SEQUENTIAL);
  }
  ~Mapped() {
    if (data_ && data_ != MAP_FAILED) munmap(data_, size_);
  }
  Mapped(const Mapped&) = delete;
  Mapped& operator=(const Mapped&) = delete;
  const unsigned char* data() const { return static_cast<const unsigned char*>(data_); }
  size_t size() const { return size_; }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

/// y = Θ x for the kernel's matrix (rows n·O + o in full mode; (N × N) in trace mode; the block-diagonal
/// o·N + n in diagonal mode), from values of type T in C order, in double, rows in parallel.
template <class T>
class KernelOp {
 public:
  using Scalar = double;
  KernelOp(const T* v, int64_t n, int64_t outputs, Mode mode) : v_(v), n_(n), o_(outputs), mode_(mode) {}
  Eigen::Index rows() const { return static_cast<Eigen::Index>(mode_ == Mode::trace ? n_ : n_ * o_); }
  Eigen::Index cols() const { return rows(); }
  void perform_op(const double* x, double* y) const {
    const int64_t N = n_, O = o_;
    ++products_;
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t i = 0; i < N; ++i) {
      if (mode_ == Mode::trace) {
        const T* row = v_ + i * N;
        double s = 0;
        for (int64_t j = 0; j < N; ++j) s += static_cast<double>(row[j]) * x[j];
        y[i] = s;
      } else if (mode_ == Mode::full) {
        double acc[64];
        std::vector<double> big(O > 64 ? static_cast<size_t>(O) : 0);
        double* a = O > 64 ? big.data() : acc;
        std::fill(a, a + O, 0.0);
        for (int64_t j = 0; j < N; ++j) {
          const T* b = v_ + (i * N + j) * O * O;
          const double* xj = x + j * O;
          for (int64_t p = 0; p < O; ++p) {
            double s = 0;
            for (int64_t q = 0; q < O; ++q) s += static_cast<double>(b[p * O + q]) * xj[q];
            a[p] += s;
          }
        }
        for (int64_t p = 0; p < O; ++p) y[i * O + p] = a[p];
      } else {
        for (int64_t p = 0; p < O; ++p) y[p * N + i] = 0;
        for (int64_t j = 0; j < N; ++j) {
          const T* b = v_ + (i * N + j) * O;
          for (int64_t p = 0; p < O; ++p) y[p * N + i] += static_cast<double>(b[p]) * x[p * N + j];
        }
      }
    }
  }
  int64_t products() const { return products_; }
  /// The trace, exactly (the diagonal's sum).
  double trace() const {
    double t = 0;
    for (int64_t i = 0; i < n_; ++i) {
      if (mode_ == Mode::trace) t += static_cast<double>(v_[i * n_ + i]);
      for (int64_t p = 0; mode_ != Mode::trace && p < o_; ++p)
        t +=
            static_cast<double>(mode_ == Mode::full ? v_[((i * n_ + i) * o_ + p) * o_ + p] : v_[(i * n_ + i) * o_ + p]);
    }
    return t;
  }

 private:
  const T* v_;
  int64_t n_, o_;
  Mode mode_;
  mutable int64_t products_ = 0;
};

struct Found {
  std::vector<double> values;  // in the order Spectra sorts them (largest first for LargestAlge)
  Eigen::MatrixXd vectors;
  bool converged = false;
  int64_t iterations = 0;
};

template <class Op>
Found lanczos(Op& op, int64_t nev, Spectra::SortRule rule, int64_t ncv, double tol, int64_t restarts = 1000) {
  const int64_t size = op.rows();
  nev = std::min<int64_t>(nev, size - 1);
  ncv = std::clamp<int64_t>(ncv, nev + 1, size);
  Spectra::SymEigsSolver<Op> eigs(op, static_cast<Eigen::Index>(nev), static_cast<Eigen::Index>(ncv));
  eigs.init();
  eigs.compute(rule, static_cast<Eigen::Index>(restarts), tol, rule);
  Found f;
  f.converged = eigs.info() == Spectra::CompInfo::Successful;
  f.iterations = eigs.num_iterations();
  const Eigen::VectorXd v = eigs.eigenvalues();
  f.values.assign(v.data(), v.data() + v.size());
  if (f.converged) f.vectors = eigs.eigenvectors();
  return f;
}

template <class T>
void analyze_large_typed(const AnalyzeArgs& args, const NpyInfo& info, const Mapped& file, uint64_t offset) {
  const Shape& s = info.shape;
  const int64_t N = s[0], O = s.size() == 2 ? 1 : s[2];
  const Mode mode = s.size() == 2 ? Mode::trace : s.size() == 3 ? Mode::diagonal : Mode::full;
  KernelOp<T> op(reinterpret_cast<const T*>(file.data() + offset), N, O, mode);
  const int64_t size = op.rows();
  if (size < 3)
    throw Error(args.kernel + ": a " + std::to_string(size) + " x " + std::to_string(size) +
                " matrix; --extremes and --top need at least 3 x 3 (analyze it without them)");
  const double epsilon = info.itemsize == 4 ? 1.1920928955078125e-07 : 2.220446049250313e-16;
  const int64_t k = std::max<int64_t>(args.top, args.extremes ? 1 : 0);
  if (k >= size)
    throw Error("--top " + std::to_string(args.top) + ": expected fewer than the matrix's " + std::to_string(size) +
                " eigenvalues (analyze it without --top for all of them)");
  const Found top = lanczos(op, k, Spectra::SortRule::LargestAlge, std::max<int64_t>(2 * k + 1, 20), 1e-10);
  Found bottom;
  if (args.extremes) bottom = lanczos(op, 1, Spectra::SortRule::SmallestAlge, 64, 1e-10);
  const double lambda_max = top.values.empty() ? 0 : top.values.front();
  const double tolerance = static_cast<double>(size) * epsilon * std::abs(lambda_max);
  nlohmann::ordered_json j;
  j["file"] = args.kernel;
  j["mode"] = name(mode);
  j["samples"] = N;
  j["outputs"] = O;
  j["size"] = size;
  j["dtype"] = info.itemsize == 4 ? "float32" : "float64";
  j["eigensolver"] = "lanczos (Spectra SymEigsSolver, memory-mapped input)";
  j["trace"] = op.trace();
  j["lambda_max"] = lambda_max;
  j["lambda_max_converged"] = top.converged;
  if (args.extremes) {
    const double lambda_min = bottom.values.empty() ? std::nan("") : bottom.values.front();
    const bool pd = bottom.converged && lambda_min > tolerance;
    j["lambda_min"] = bottom.converged ? nlohmann::ordered_json(lambda_min) : nlohmann::ordered_json(nullptr);
    j["lambda_min_converged"] = bottom.converged;
    j["condition"] = pd ? nlohmann::ordered_json(lambda_max / lambda_min) : nlohmann::ordered_json(nullptr);
    j["condition_method"] = "lanczos";
    j["positive_definite"] = pd;
    j["tolerance"] = tolerance;
    if (!bottom.converged)
      j["note"] =
          "λmin did not converge within 1000 restarts: the small end of an NTK's spectrum is clustered; the "
          "condition number needs the dense solver (xntk analyze without --extremes)";
    else if (!pd)
      j["note"] = "λmin ≤ tolerance: singular to working precision, the condition number is infinite";
  }
  j["effective_rank"] = nullptr;
  j["effective_rank_method"] = "needs the whole spectrum: run xntk analyze without --extremes and --top";
  if (args.top > 0)
    j["top"] = std::vector<double>(
        top.values.begin(), top.values.begin() + std::min<size_t>(top.values.size(), static_cast<size_t>(args.top)));
  j["matrix_products"] = op.products();
  if (!args.vectors.empty()) {
    if (!top.converged) throw Error(args.vectors + ": the top eigenpairs did not converge; nothing written");
    Tensor<double> v({static_cast<int64_t>(top.vectors.cols()), size});
    for (int64_t c = 0; c < top.vectors.cols(); ++c)
      for (int64_t r = 0; r < size; ++r) v[c * size + r] = top.vectors(r, c);
    detail::AtomicFile out(args.vectors);
    write_npy(out.stream(), v);
    out.commit();
  }
  if (args.json) {
    std::cout << j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << std::endl;
    return;
  }
  std::cout << args.kernel << ": " << name(mode) << " kernel, N = " << N << " samples, O = " << O << " outputs, "
            << size << " x " << size << " matrix\n";
  for (const auto& [key, value] : j.items()) {
    if (key == "file" || key == "mode" || key == "samples" || key == "outputs" || key == "size") continue;
    std::cout << "  " << key << std::string(key.size() < 22 ? 22 - key.size() : 1, ' ') << value.dump() << "\n";
  }
}

}  // namespace
#endif

void analyze_large(const AnalyzeArgs& args) {
#ifndef XNTK_HAVE_SPECTRA
  throw Error(std::string(args.extremes ? "--extremes" : "--top") +
              ": this xntk was built without Spectra (apt-get install libspectra-dev and rebuild)");
#else
  if (!args.components.empty())
    throw Error("--components: not with --extremes or --top (analyze the components without them)");
  const NpyInfo info = read_npy_info(args.kernel);
  const Shape& s = info.shape;
  const bool square = s.size() >= 2 && s.size() <= 4 && s[0] == s[1] && (s.size() != 4 || s[2] == s[3]);
  if (!square)
    throw Error(args.kernel + ": shape " + to_string(s) + "; expected Θ(X, X) as (N, N), (N, N, O) or (N, N, O, O)");
  if (info.fortran_order)
    throw Error(args.kernel + ": Fortran-ordered; --extremes and --top read C-ordered kernels in place");
  Mapped file(args.kernel);
  const uint64_t bytes = static_cast<uint64_t>(numel(s)) * static_cast<uint64_t>(info.itemsize);
  if (file.size() < bytes) throw Error(args.kernel + ": truncated");
  const uint64_t offset = file.size() - bytes;
  // the data must be little-endian, as xntk writes it: the header's descr says so
  const std::string header(reinterpret_cast<const char*>(file.data()), std::min<uint64_t>(offset, 4096));
  if (header.find("'<f") == std::string::npos || offset % static_cast<uint64_t>(info.itemsize) != 0)
    throw Error(args.kernel + ": not little-endian float32/float64 data; --extremes and --top read it in place");
  if (info.itemsize == 4)
    analyze_large_typed<float>(args, info, file, offset);
  else
    analyze_large_typed<double>(args, info, file, offset);
#endif
}

}  // namespace xntk::cli
