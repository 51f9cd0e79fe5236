#pragma once
/// \file xntk.hpp
/// Everything public in one include.

#include "xntk/analysis.hpp"
#include "xntk/dynamics.hpp"
#include "xntk/error.hpp"
#include "xntk/io.hpp"
#include "xntk/kernel.hpp"
#include "xntk/layers.hpp"
#include "xntk/model.hpp"
#include "xntk/sink.hpp"
#include "xntk/tensor.hpp"
#include "xntk/train.hpp"
