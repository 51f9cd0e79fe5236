#!/usr/bin/env python3
"""Writes the seed corpus of each fuzz harness into corpus/<harness>/ (standard library only):
well-formed inputs of each format, so that the fuzzers start from every feature of the readers.
Inputs the fuzzers found are added to the same directories by hand, named after what they hold."""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(harness, name, data):
    d = os.path.join(HERE, "corpus", harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def npy(descr, shape, values, fortran=False, major=1):
    shape_text = "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
    header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, shape_text)
    header += " " * ((-(len(header) + 11 + (2 if major > 1 else 0))) % 64) + "\n"
    length = struct.pack("<H", len(header)) if major == 1 else struct.pack("<I", len(header))
    fmt = {"f4": "f", "f8": "d"}[descr[1:]]
    order = ">" if descr[0] == ">" else "<"
    return b"\x93NUMPY" + bytes([major, 0]) + length + header.encode() + struct.pack(order + fmt * len(values), *values)


def safetensors(tensors, metadata=None):
    header, blobs, at = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, values in tensors:
        b = struct.pack("<" + ("d" if dtype == "F64" else "f") * len(values), *values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def checksum(values, dtype):
    """kernel_checksum of lib/io/checksum.hpp: the sum mod 2^64 over the values in C order of SplitMix64's
    finaliser of bits + (i + 1) * 0x9E3779B97F4A7C15."""
    m = (1 << 64) - 1
    h = 0
    for i, v in enumerate(values):
        bits = struct.unpack("<I", struct.pack("<f", v))[0] if dtype == "f4" else struct.unpack("<Q", struct.pack("<d", v))[0]
        z = (bits + (i + 1) * 0x9E3779B97F4A7C15) & m
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
        h = (h + (z ^ (z >> 31))) & m
    return "mix64:%016x" % h


# ---- npy ----
six = [0.5, -1.0, 2.25, 3.0, -4.5, 5.0]
write("npy", "c_f8_2x3.npy", npy("<f8", [2, 3], six))
write("npy", "c_f4_6.npy", npy("<f4", [6], six))
write("npy", "big_endian_f8.npy", npy(">f8", [3, 2], six))
write("npy", "fortran_2x3.npy", npy("<f8", [2, 3], six, fortran=True))
write("npy", "fortran_f4_1x2x3.npy", npy("<f4", [1, 2, 3], six, fortran=True))
write("npy", "v2_f8.npy", npy("<f8", [6], six, major=2))
write("npy", "v3_f4.npy", npy("<f4", [2, 3], six, major=3))
write("npy", "scalar.npy", npy("<f8", [], [7.0]))
write("npy", "empty_0x3.npy", npy("<f8", [0, 3], []))
py2 = b"{'shape': (2L, 1L), 'fortran_order': False, 'descr': '<f4'}\n"
write("npy", "python2_longs.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(py2)) + py2 + struct.pack("<ff", 1, 2))

# ---- safetensors ----
write("safetensors", "two_f64_meta.safetensors",
      safetensors([("0.weight", "F64", [2, 3], six), ("0.bias", "F64", [2], [1.0, -1.0])], {"format": "pt"}))
write("safetensors", "f32.safetensors", safetensors([("w", "F32", [3, 2], six)]))
write("safetensors", "scalar_and_empty.safetensors", safetensors([("s", "F64", [], [1.5]), ("e", "F32", [0, 4], [])]))
write("safetensors", "no_tensors.safetensors", safetensors([], {"a": "b"}))

# ---- model JSON ----
models = {
    "design_cnn.json": {"input": [3, 32, 32], "parameterization": "standard", "layers": [
        {"type": "conv2d", "out_channels": 32, "kernel_size": 3, "stride": 1, "padding": 0, "dilation": 1, "bias": True},
        {"type": "relu"}, {"type": "flatten"}, {"type": "linear", "out_features": 10}]},
    "ntk_mlp.json": {"input": 8, "parameterization": "ntk", "layers": [
        {"type": "linear", "out_features": 4, "in_features": 8, "bias": False, "w_std": 1.5, "b_std": 0.1},
        {"type": "leaky_relu", "negative_slope": 0.2}, {"type": "elu", "alpha": 0.5},
        {"type": "softplus", "beta": 2, "threshold": 5}, {"type": "gelu", "approximate": "tanh"},
        {"type": "tanh"}, {"type": "sigmoid"}, {"type": "erf"}, {"type": "silu"}, {"type": "identity"}]},
    "pools.json": {"input": [2, 9, 9], "layers": [
        {"type": "conv2d", "out_channels": 3, "kernel_size": [3, 5], "padding": "same", "dilation": [1, 2],
         "method": "positions"},
        {"type": "conv2d", "out_channels": 3, "kernel_size": 2, "padding": "valid", "groups": 1, "padding_mode": "zeros"},
        {"type": "maxpool2d", "kernel_size": 2}, {"type": "avgpool2d", "kernel_size": [2, 3], "stride": None, "padding": 1},
        {"type": "maxpool2d", "kernel_size": 3, "stride": 1, "padding": [1, 0], "dilation": 2, "ceil_mode": False},
        {"type": "global_avgpool"}, {"type": "flatten", "start_dim": 1, "end_dim": -1}]},
    "blocks.json": {"input": [2, 6, 6], "layers": [
        {"type": "residual", "body": [{"type": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1},
                                      {"type": "relu"}], "shortcut": []},
        {"type": "residual", "body": [{"type": "conv2d", "out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1}],
         "shortcut": [{"type": "conv2d", "out_channels": 4, "kernel_size": 1, "stride": 2, "padding": 0},
                      {"type": "avgpool2d", "kernel_size": 1}]},
        {"type": "sequential", "layers": [{"type": "flatten"}, {"type": "sequential", "layers": [
            {"type": "linear", "out_features": 3}, {"type": "tanh"}]}]}]},
}
for name, m in models.items():
    write("model_json", name, json.dumps(m))


# ---- analyze: flag byte, 4-byte npy length, K.npy, C.safetensors ----
def analyze_input(kernel_npy, components=b""):
    return bytes([1 if components else 0]) + struct.pack("<I", len(kernel_npy)) + kernel_npy + components


trace = [4.0, 1.0, 0.5, 1.0, 3.0, 0.25, 0.5, 0.25, 2.0]  # (3, 3), positive definite
write("analyze", "trace_3x3", analyze_input(npy("<f8", [3, 3], trace)))
write("analyze", "trace_3x3_f4", analyze_input(npy("<f4", [3, 3], trace)))
# full (2, 2, 2, 2): Θ[n, m, o, o'] = δ_oo' A[n, m] + 0.1 B; with components a and b
a = [2.0, 0.5, 0.5, 1.0]
full_a = [a[n * 2 + m] * (o == p) for n in range(2) for m in range(2) for o in range(2) for p in range(2)]
full_b = [0.1 for _ in range(16)]
full = [x + y for x, y in zip(full_a, full_b)]
write("analyze", "full_2x2x2x2_components",
      analyze_input(npy("<f8", [2, 2, 2, 2], full),
                    safetensors([("1.weight", "F64", [2, 2, 2, 2], full_a), ("1.bias", "F64", [2, 2, 2, 2], full_b),
                                 ("total", "F64", [2, 2, 2, 2], full)],
                                {"mode": "full", "dtype": "float64", "run_id": "0123456789abcdef",
                                 "kernel_checksum": checksum(full, "f8")})))
diag = [a[n * 2 + m] * (o + 1) for n in range(2) for m in range(2) for o in range(3)]
write("analyze", "diagonal_2x2x3_components",
      analyze_input(npy("<f8", [2, 2, 3], diag),
                    safetensors([("0.weight", "F64", [2, 2, 3], diag), ("total", "F64", [2, 2, 3], diag)],
                                {"kernel_checksum": checksum(diag, "f8")})))
