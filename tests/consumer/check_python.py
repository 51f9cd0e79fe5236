"""Run by run.cmake with PYTHONPATH set to an installed prefix's site directory: the installed package imports
from there (not from the build tree) and computes a kernel."""
import sys

import numpy

import xntk

prefix = sys.argv[1]
assert xntk.__file__.startswith(prefix), (xntk.__file__, prefix)
net = xntk.Sequential({"input": [3], "layers": [{"type": "linear", "out_features": 2}]})
k = xntk.ntk(net, numpy.ones((2, 3)))
assert k.shape == (2, 2, 2, 2), k.shape
print("installed xntk", xntk.__version__, "from", xntk.__file__)
