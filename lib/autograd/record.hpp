#pragma once
// Records a model's forward pass for one sample on the autograd tape, from the model's spec and its parameter
// tensors only: a visitor over the LayerSpecs that knows nothing of the computing layers (lib/nn/). Shapes,
// index maps and parameterisation multipliers are worked out here from PyTorch's definitions, independently
// of the explicit path, so that a mistake in one cannot cancel out in the other.

#include <string>
#include <vector>

#include "autograd/tape.hpp"
#include "xntk/model.hpp"

namespace xntk::autograd {

/// Records the model on `tape` from input variable `in` (one sample of the model's input shape); parameter
/// slots are numbered in state_dict order. Returns the output variable.
template <class T>
int record(Tape<T>& tape, const Sequential<T>& model, int in);

}  // namespace xntk::autograd
