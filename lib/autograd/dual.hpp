#pragma once
// Forward-mode dual numbers: the autograd path differentiates each activation's value function with
// these elementary rules instead of using the explicit path's hand-written derivatives.

#include <cmath>
#include <numbers>

namespace xntk::autograd {

template <class T>
struct Dual {
  T v;  // value
  T d;  // derivative with respect to the input
};

template <class T>
Dual<T> operator+(Dual<T> a, Dual<T> b) {
  return {a.v + b.v, a.d + b.d};
}
template <class T>
Dual<T> operator-(Dual<T> a, Dual<T> b) {
  return {a.v - b.v, a.d - b.d};
}
template <class T>
Dual<T> operator-(Dual<T> a) {
  return {-a.v, -a.d};
}
template <class T>
Dual<T> operator*(Dual<T> a, Dual<T> b) {
  return {a.v * b.v, a.d * b.v + a.v * b.d};
}
template <class T>
Dual<T> operator/(Dual<T> a, Dual<T> b) {
  return {a.v / b.v, (a.d * b.v - a.v * b.d) / (b.v * b.v)};
}
template <class T>
Dual<T> operator+(T a, Dual<T> b) {
  return {a + b.v, b.d};
}
template <class T>
Dual<T> operator+(Dual<T> a, T b) {
  return {a.v + b, a.d};
}
template <class T>
Dual<T> operator-(Dual<T> a, T b) {
  return {a.v - b, a.d};
}
template <class T>
Dual<T> operator*(T a, Dual<T> b) {
  return {a * b.v, a * b.d};
}
template <class T>
Dual<T> operator*(Dual<T> a, T b) {
  return {a.v * b, a.d * b};
}
template <class T>
Dual<T> operator/(Dual<T> a, T b) {
  return {a.v / b, a.d / b};
}
template <class T>
Dual<T> operator/(T a, Dual<T> b) {
  return {a / b.v, -a * b.d / (b.v * b.v)};
}

template <class T>
Dual<T> exp(Dual<T> a) {
  const T e = std::exp(a.v);
  return {e, e * a.d};
}
template <class T>
Dual<T> log1p(Dual<T> a) {
  return {std::log1p(a.v), a.d / (T(1) + a.v)};
}
template <class T>
Dual<T> tanh(Dual<T> a) {
  const T t = std::tanh(a.v);
  return {t, (T(1) - t * t) * a.d};
}
template <class T>
Dual<T> erf(Dual<T> a) {
  const T k = T(2) / std::sqrt(std::numbers::pi_v<T>);
  return {std::erf(a.v), k * std::exp(-a.v * a.v) * a.d};
}

template <class T>
T value_of(Dual<T> a) {
  return a.v;
}
template <class T>
T value_of(T a) {
  return a;
}

}  // namespace xntk::autograd
