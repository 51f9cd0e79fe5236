#pragma once
// The reference backend: every primitive as the plainest loops that compute its definition, on one thread,
// without BLAS, fast paths, reordering or skipped zeros. It is the oracle the CPU backend's kernels are
// tested against (tests/backend/test_backend_ops.cpp), and it can run a whole kernel computation
// (KernelOptions::backend = "reference") to cross-check one end to end.

#include "backend/backend.hpp"

namespace xntk::backend::reference {

/// The process-wide reference backend.
const Backend& instance();

}  // namespace xntk::backend::reference
