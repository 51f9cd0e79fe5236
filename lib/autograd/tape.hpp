#pragma once
// A small reverse-mode engine over primitive ops, for one sample at a time. Each node holds its forward
// value; the reverse sweep carries O cotangent rows at once (one per network output), so a single sweep
// yields the sample's Jacobian with respect to every parameter. Its vector-Jacobian products are the
// generic ones of each primitive (matmul, add, gather, ...), never a layer's closed-form backward.

#include <Eigen/Core>
#include <array>
#include <cstdint>
#include <tuple>
#include <vector>

#include "nn/activation_fn.hpp"
#include "xntk/error.hpp"
#include "xntk/tensor.hpp"

namespace xntk::autograd {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Row-major view of `rows` × `cols` at p.
template <class T>
Eigen::Map<const RowMat<T>> view(const T* p, int64_t rows, int64_t cols) {
  return Eigen::Map<const RowMat<T>>(p, rows, cols);
}
template <class T>
Eigen::Map<RowMat<T>> view(T* p, int64_t rows, int64_t cols) {
  return Eigen::Map<RowMat<T>>(p, rows, cols);
}

/// y[out] += weight · x[in].
template <class T>
struct SparseEntry {
  int64_t out, in;
  T weight;
};

template <class T>
class Tape {
 public:
  /// A constant leaf (the network input).
  int input(const T* x, int64_t size) { return push(Op::input, {}, std::vector<T>(x, x + size)); }

  /// A parameter leaf; its Jacobian lands in slot `slot`. The tensor must outlive the tape.
  int parameter(const Tensor<T>& p, int slot) {
    Node n;
    n.op = Op::parameter;
    n.ext = p.data();
    n.size = p.size();
    n.slot = slot;
    n.grad = true;
    nodes_.push_back(std::move(n));
    return last();
  }

  /// C = A B with A (r × k), B (k × c), all row-major.
  int matmul(int a, int b, int64_t r, int64_t k, int64_t c) {
    check(a, r * k, "matmul lhs");
    check(b, k * c, "matmul rhs");
    std::vector<T> y(static_cast<size_t>(r * c));
    view(y.data(), r, c).noalias() = view(data(a), r, k) * view(data(b), k, c);
    const int v = push(Op::matmul, {a, b}, std::move(y));
    nodes_[v].dims = {r, k, c};
    return v;
  }

  /// y = s · a.
  int scale(int a, T s) {
    std::vector<T> y(data(a), data(a) + size(a));
    for (T& e : y) e *= s;
    const int v = push(Op::scale, {a}, std::move(y));
    nodes_[v].scalar = s;
    return v;
  }

  /// y = a + b (same size).
  int add(int a, int b) {
    check(b, size(a), "add");
    std::vector<T> y(data(a), data(a) + size(a));
    for (int64_t i = 0; i < size(a); ++i) y[i] += data(b)[i];
    return push(Op::add, {a, b}, std::move(y));
  }

  /// y = a ⊙ b (same size).
  int mul(int a, int b) {
    check(b, size(a), "mul");
    std::vector<T> y(data(a), data(a) + size(a));
    for (int64_t i = 0; i < size(a); ++i) y[i] *= data(b)[i];
    return push(Op::mul, {a, b}, std::move(y));
  }

  /// y[r, c] = a[r, c] + b[r] for a (rows × cols), b (rows).
  int add_bias(int a, int b, int64_t rows, int64_t cols) {
    check(a, rows * cols, "add_bias input");
    check(b, rows, "add_bias bias");
    std::vector<T> y(data(a), data(a) + size(a));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) y[r * cols + c] += data(b)[r];
    const int v = push(Op::add_bias, {a, b}, std::move(y));
    nodes_[v].dims = {rows, cols, 0};
    return v;
  }

  /// y = φ(a) elementwise; φ' comes from dual numbers through φ's value function.
  int activation(int a, const Activation& act) {
    std::vector<T> y(static_cast<size_t>(size(a))), dy(y.size());
    for (int64_t i = 0; i < size(a); ++i) {
      const Dual<T> r = detail::activation_value<T>(act, Dual<T>{data(a)[i], T(1)});
      y[i] = r.v;
      dy[i] = r.d;
    }
    const int v = push(Op::elementwise, {a}, std::move(y));
    nodes_[v].aux = std::move(dy);
    return v;
  }

  /// y = f(a) elementwise for f returning (f(x), f'(x)).
  template <class F>
  int map(int a, F f) {
    std::vector<T> y(static_cast<size_t>(size(a))), dy(y.size());
    for (int64_t i = 0; i < size(a); ++i) std::tie(y[i], dy[i]) = f(data(a)[i]);
    const int v = push(Op::elementwise, {a}, std::move(y));
    nodes_[v].aux = std::move(dy);
    return v;
  }

  /// y[i] = a[index[i]], or 0 where index[i] < 0.
  int gather(int a, std::vector<int64_t> index) {
    std::vector<T> y(index.size());
    for (size_t i = 0; i < index.size(); ++i) {
      if (index[i] >= size(a)) throw Error("autograd: gather index out of range");
      y[i] = index[i] < 0 ? T(0) : data(a)[index[i]];
    }
    const int v = push(Op::gather, {a}, std::move(y));
    nodes_[v].index = std::move(index);
    return v;
  }

  /// y (out_size) = Σ over entries of weight · a[in] into y[out].
  int sparse(int a, int64_t out_size, std::vector<SparseEntry<T>> entries) {
    std::vector<T> y(static_cast<size_t>(out_size), T(0));
    for (const auto& e : entries) {
      if (e.out < 0 || e.out >= out_size || e.in < 0 || e.in >= size(a))
        throw Error("autograd: sparse entry out of range");
      y[e.out] += e.weight * data(a)[e.in];
    }
    const int v = push(Op::sparse, {a}, std::move(y));
    nodes_[v].entries = std::move(entries);
    return v;
  }

  const T* data(int v) const { return nodes_[v].ext ? nodes_[v].ext : nodes_[v].value.data(); }
  int64_t size(int v) const { return nodes_[v].size; }

  /// Reverse sweep from `out` seeded with the identity (O = size(out) cotangent rows). jac[slot] receives
  /// the (O × numel) Jacobian of each parameter slot; it must have `slots` entries.
  void jacobians(int out, std::vector<RowMat<T>>& jac) const {
    const int64_t o = size(out);
    std::vector<RowMat<T>> cot(nodes_.size());
    cot[out] = RowMat<T>::Identity(o, o);
    for (int v = out; v >= 0; --v) {
      const Node& n = nodes_[v];
      if (!n.grad || cot[v].size() == 0) continue;
      const RowMat<T>& g = cot[v];
      auto into = [&](int a) -> RowMat<T>& {
        if (cot[a].size() == 0) cot[a] = RowMat<T>::Zero(o, size(a));
        return cot[a];
      };
      switch (n.op) {
        case Op::input: break;
        case Op::parameter: jac.at(n.slot) += g; break;
        case Op::matmul: {
          const int a = n.args[0], b = n.args[1];
          const int64_t r = n.dims[0], k = n.dims[1], c = n.dims[2];
          for (int64_t i = 0; i < o; ++i) {
            auto gi = view(g.row(i).data(), r, c);
            if (nodes_[a].grad) view(into(a).row(i).data(), r, k).noalias() += gi * view(data(b), k, c).transpose();
            if (nodes_[b].grad) view(into(b).row(i).data(), k, c).noalias() += view(data(a), r, k).transpose() * gi;
          }
          break;
        }
        case Op::scale:
          if (nodes_[n.args[0]].grad) into(n.args[0]) += n.scalar * g;
          break;
        case Op::add:
          for (int a : n.args)
            if (nodes_[a].grad) into(a) += g;
          break;
        case Op::mul: {
          const int a = n.args[0], b = n.args[1];
          for (int64_t i = 0; i < o; ++i)
            for (int64_t j = 0; j < n.size; ++j) {
              if (nodes_[a].grad) into(a)(i, j) += g(i, j) * data(b)[j];
              if (nodes_[b].grad) into(b)(i, j) += g(i, j) * data(a)[j];
            }
          break;
        }
        case Op::add_bias: {
          if (nodes_[n.args[0]].grad) into(n.args[0]) += g;
          if (nodes_[n.args[1]].grad) {
            auto& gb = into(n.args[1]);
            const int64_t rows = n.dims[0], cols = n.dims[1];
            for (int64_t i = 0; i < o; ++i)
              for (int64_t r = 0; r < rows; ++r) gb(i, r) += g.row(i).segment(r * cols, cols).sum();
          }
          break;
        }
        case Op::elementwise: {
          if (!nodes_[n.args[0]].grad) break;
          auto& ga = into(n.args[0]);
          for (int64_t i = 0; i < o; ++i)
            for (int64_t j = 0; j < n.size; ++j) ga(i, j) += g(i, j) * n.aux[j];
          break;
        }
        case Op::gather: {
          if (!nodes_[n.args[0]].grad) break;
          auto& ga = into(n.args[0]);
          for (int64_t i = 0; i < o; ++i)
            for (size_t j = 0; j < n.index.size(); ++j)
              if (n.index[j] >= 0) ga(i, n.index[j]) += g(i, static_cast<int64_t>(j));
          break;
        }
        case Op::sparse: {
          if (!nodes_[n.args[0]].grad) break;
          auto& ga = into(n.args[0]);
          for (int64_t i = 0; i < o; ++i)
            for (const auto& e : n.entries) ga(i, e.in) += e.weight * g(i, e.out);
          break;
        }
      }
    }
  }

 private:
  enum class Op { input, parameter, matmul, scale, add, mul, add_bias, elementwise, gather, sparse };
  struct Node {
    Op op = Op::input;
    std::vector<int> args;
    std::vector<T> value;
    const T* ext = nullptr;  // parameter data, not copied
    int64_t size = 0;
    bool grad = false;  // depends on a parameter
    int slot = -1;
    std::array<int64_t, 3> dims{};
    T scalar = T(0);
    std::vector<T> aux;
    std::vector<int64_t> index;
    std::vector<SparseEntry<T>> entries;
  };

  int push(Op op, std::vector<int> args, std::vector<T> value) {
    Node n;
    n.op = op;
    n.size = static_cast<int64_t>(value.size());
    n.value = std::move(value);
    for (int a : args) n.grad = n.grad || nodes_[a].grad;
    n.args = std::move(args);
    nodes_.push_back(std::move(n));
    return last();
  }
  int last() const { return static_cast<int>(nodes_.size()) - 1; }
  void check(int v, int64_t expected, const char* what) const {
    if (size(v) != expected)
      throw Error(std::string("autograd: ") + what + " has " + std::to_string(size(v)) + " values, expected " +
                  std::to_string(expected));
  }

  std::vector<Node> nodes_;
};

}  // namespace xntk::autograd
