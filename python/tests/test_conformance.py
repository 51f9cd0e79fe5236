"""xntk.ntk on xntk.from_torch(m) against functorch's Jacobian contraction on random torch models: every layer
from_torch maps, residual blocks, nested and class-based containers; float64 and float32; every mode; X2
given and omitted; the total and each component."""

import functools

import numpy as np
import pytest

from helpers import TOLERANCE, jacobians, reference_ntk, rel_error, torch, xntk

nn = torch.nn
Residual = xntk.torch.Residual


def _with_head(features, input_shape, outputs):
    """features, then Flatten and a Linear head sized from the features' output."""
    with torch.no_grad():
        n = nn.Sequential(*features)(torch.zeros(1, *input_shape)).numel()
    return nn.Sequential(*features, nn.Flatten(), nn.Linear(n, outputs))


class Net(nn.Module):
    """A class-based model whose forward is its children in order (state_dict "features.0.weight", ...)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.MaxPool2d(2))
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(3 * 3 * 3, 4)

    def forward(self, x):
        return self.classifier(self.flatten(self.features(x)))


def _batchnorm_cnn():
    """BatchNorm2d (affine and not), BatchNorm1d (momentum None), Dropout2d and Dropout, in eval mode, with running
    statistics and affine parameters away from their defaults."""
    m = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout2d(0.3),
                      nn.Conv2d(4, 3, 3), nn.BatchNorm2d(3, affine=False, eps=1e-3), nn.Flatten(),
                      nn.Linear(3 * 4 * 4, 5), nn.BatchNorm1d(5, momentum=None), nn.Tanh(), nn.Dropout(0.5),
                      nn.Linear(5, 2))
    with torch.no_grad():
        for b in m.modules():
            if isinstance(b, (nn.BatchNorm2d, nn.BatchNorm1d)):
                b.running_mean.uniform_(-0.5, 0.5)
                b.running_var.uniform_(0.5, 2.0)
                b.num_batches_tracked.fill_(7)
                if b.affine:
                    b.weight.uniform_(0.5, 1.5)
                    b.bias.uniform_(-0.3, 0.3)
    return m.eval()


def _basic_blocks():
    """torchvision's BasicBlock and Bottleneck (identity and downsampling shortcuts) between small convs, in eval
    mode with BatchNorm statistics away from their defaults."""
    from torchvision.models.resnet import BasicBlock, Bottleneck
    down = nn.Sequential(nn.Conv2d(4, 6, 1, stride=2, bias=False), nn.BatchNorm2d(6))
    m = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), BasicBlock(4, 4), BasicBlock(4, 6, stride=2, downsample=down),
                      Bottleneck(6, 2, downsample=nn.Sequential(nn.Conv2d(6, 8, 1), nn.BatchNorm2d(8))),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
    with torch.no_grad():
        for b in m.modules():
            if isinstance(b, nn.BatchNorm2d):
                b.running_mean.uniform_(-0.5, 0.5)
                b.running_var.uniform_(0.5, 2.0)
                b.weight.uniform_(0.5, 1.5)
                b.bias.uniform_(-0.3, 0.3)
    return m.eval()


def _layernorm_adaptive():
    """LayerNorm over (C, H, W), over the last axis and without affine parameters, with γ and β away from their
    defaults, and AdaptiveAvgPool2d of uneven, overlapping windows and of one axis kept (None)."""
    m = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.LayerNorm([4, 7, 6]), nn.ReLU(),
                      nn.AdaptiveAvgPool2d((4, None)), nn.Conv2d(4, 3, 2), nn.Tanh(), nn.LayerNorm(5, eps=1e-3),
                      nn.AdaptiveAvgPool2d((2, 3)), nn.Flatten(), nn.Linear(18, 5),
                      nn.LayerNorm(5, elementwise_affine=False), nn.Linear(5, 3), nn.LayerNorm([3]))
    with torch.no_grad():
        for b in m.modules():
            if isinstance(b, nn.LayerNorm) and b.elementwise_affine:
                b.weight.uniform_(0.5, 1.5)
                b.bias.uniform_(-0.3, 0.3)
    return m


def _models():
    """name -> (builder of the float64 module, per-sample input shape)."""
    return {
        "mlp_relu_leaky_tanh_sigmoid": (lambda: nn.Sequential(
            nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 6), nn.LeakyReLU(0.2), nn.Linear(6, 4), nn.Tanh(),
            nn.Linear(4, 3, bias=False), nn.Sigmoid(), nn.Linear(3, 3)), (5,)),
        "mlp_gelu_silu_elu_softplus_identity": (lambda: nn.Sequential(
            nn.Linear(6, 8), nn.GELU(), nn.Linear(8, 8), nn.GELU(approximate="tanh"), nn.Linear(8, 5), nn.SiLU(),
            nn.Linear(5, 5), nn.ELU(0.7), nn.Linear(5, 4), nn.Softplus(beta=2.0, threshold=5.0), nn.Linear(4, 4),
            nn.Identity(), nn.Linear(4, 2)), (6,)),
        "cnn_conv_pools": (lambda: _with_head([
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
            nn.Conv2d(4, 5, (3, 2), stride=(2, 1), padding=(1, 0)), nn.Tanh(),
            nn.Conv2d(5, 4, 3, padding="same", dilation=2), nn.AvgPool2d(2),
            nn.Conv2d(4, 3, 2, padding="valid", bias=False), nn.MaxPool2d(2, stride=1, padding=1)], (3, 10, 9), 3),
            (3, 10, 9)),
        "cnn_strided_pool_global": (lambda: nn.Sequential(
            nn.Conv2d(2, 4, 3, stride=2, dilation=(1, 2)), nn.SiLU(), nn.MaxPool2d(3, stride=2, padding=1, dilation=1),
            nn.AvgPool2d((2, 1), stride=(1, 1), padding=(1, 0)), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
            nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)), (2, 13, 15)),
        "residual_cnn": (lambda: nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(),
            Residual([nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)]),
            Residual([nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.Tanh()], nn.Conv2d(4, 6, 1, stride=2)),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3)), (2, 8, 8)),
        "residual_mlp_nested": (lambda: nn.Sequential(
            nn.Sequential(nn.Linear(4, 6), nn.Tanh()),
            Residual(nn.Sequential(nn.Linear(6, 6), nn.GELU(), nn.Sequential(nn.Linear(6, 6)))),
            Residual([nn.Linear(6, 5), nn.ReLU()], nn.Linear(6, 5, bias=False)),
            nn.Sequential(nn.Sequential(nn.Linear(5, 3)))), (4,)),
        "class_based": (Net, (2, 8, 8)),
        "cnn_batchnorm_dropout_eval": (_batchnorm_cnn, (2, 6, 6)),
        "torchvision_resnet_blocks": (_basic_blocks, (2, 6, 6)),
        "cnn_layernorm_adaptive_pool": (_layernorm_adaptive, (2, 7, 6)),
        "cnn_groups_depthwise_same": (lambda: nn.Sequential(
            nn.Conv2d(4, 6, 3, padding="same", groups=2), nn.ReLU(),
            nn.Conv2d(6, 6, 2, padding="same", groups=6), nn.Tanh(),
            nn.Conv2d(6, 4, (3, 2), stride=2, groups=2, bias=False), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(4, 3)), (4, 7, 6)),
    }


MODELS = _models()


@functools.lru_cache(maxsize=None)
def case(name, dtype):
    """The torch module, its xntk model, inputs and Jacobians (drawn once per model and dtype)."""
    build, shape = MODELS[name]
    torch.manual_seed(sum(map(ord, name)))
    module = build().double()
    if dtype == "float32":
        module = module.float()
    kind = getattr(torch, dtype)
    x1 = torch.randn(5, *shape, dtype=kind)
    x2 = torch.randn(3, *shape, dtype=kind)
    net = xntk.from_torch(module, shape)
    return module, net, x1, x2, jacobians(module, x1), jacobians(module, x2)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("mode", ["full", "trace", "diagonal"])
@pytest.mark.parametrize("name", list(MODELS))
def test_ntk_equals_functorch(name, mode, dtype):
    module, net, x1, x2, j1, j2 = case(name, dtype)
    assert net.dtype == np.dtype(dtype)
    tol = TOLERANCE[np.dtype(dtype).type]
    for second in (x2, None):
        want, want_parts = reference_ntk(module, x1, second, mode, j1, j2 if second is not None else j1)
        total, parts = xntk.ntk(net, x1, second, mode=mode, components=True)
        assert total.dtype == np.dtype(dtype)
        assert rel_error(total, want) <= tol, (second is None, rel_error(total, want))
        # components in xntk's order (outermost first, weight before bias), named as the module's parameters
        assert list(parts) == net.component_names()
        assert [net.torch_names[k] for k in parts] == list(reversed_pairs(module))
        for k, v in parts.items():
            assert rel_error(v, want_parts[net.torch_names[k]]) <= tol, k
        # the total alone is the same kernel
        alone = xntk.ntk(net, x1, second, mode=mode)
        assert rel_error(alone, total) <= tol


def reversed_pairs(module):
    """State_dict parameter names in component order: owners reversed, weight before bias within each."""
    owners = {}
    for name, _ in module.named_parameters():
        owner, _, leaf = name.rpartition(".")
        owners.setdefault(owner, []).append(name)
    return [n for owner in reversed(list(owners)) for n in sorted(owners[owner], key=lambda s: not s.endswith("weight"))]


@pytest.mark.parametrize("name", ["mlp_relu_leaky_tanh_sigmoid", "residual_cnn", "class_based"])
def test_autograd_method_equals_functorch(name):
    module, net, x1, x2, j1, j2 = case(name, "float64")
    want, _ = reference_ntk(module, x1, x2, "full", j1, j2)
    assert rel_error(xntk.ntk(net, x1, x2, method="autograd"), want) <= 1e-10


def test_dtype_argument_computes_in_that_dtype():
    module, net, x1, x2, j1, j2 = case("cnn_conv_pools", "float64")
    want, _ = reference_ntk(module, x1, x2, "trace", j1, j2)
    k32 = xntk.ntk(net, x1, x2, mode="trace", dtype="float32")
    assert k32.dtype == np.float32
    assert rel_error(k32, want) <= 1e-4
    assert net.dtype == np.float64  # the model itself is unchanged


def test_inputs_may_be_numpy():
    module, net, x1, x2, j1, j2 = case("residual_mlp_nested", "float64")
    want, _ = reference_ntk(module, x1, x2, "diagonal", j1, j2)
    assert rel_error(xntk.ntk(net, x1.numpy(), x2.numpy(), mode="diagonal"), want) <= 1e-10


def test_the_functorch_tutorial_cnn():
    """The tutorial's CNN and data shapes: 20 × 5 images, full kernel (20, 5, 10, 10)."""
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3),
                           nn.Flatten(), nn.Linear(21632, 10)).double()
    x_train = torch.randn(20, 3, 32, 32, dtype=torch.float64)
    x_test = torch.randn(5, 3, 32, 32, dtype=torch.float64)
    net = xntk.from_torch(module, (3, 32, 32))
    want, _ = reference_ntk(module, x_train, x_test, "full")
    got = xntk.ntk(net, x_train, x_test)
    assert got.shape == (20, 5, 10, 10)
    assert rel_error(got, want) <= 1e-10


def test_a_torchvision_resnet_maps_onto_its_state_dict():
    """resnet18's layout (ResNet's own forward, with flatten) and names: from_torch checks the outputs equal the
    module's; the head's and the last BatchNorm's components against per-sample autograd gradients."""
    from torchvision.models.resnet import BasicBlock, ResNet
    torch.manual_seed(4)
    module = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=2).double().eval()
    net = xntk.from_torch(module, (3, 16, 16))
    assert net.torch_names["4.0.0.body.0.weight"] == "layer1.0.conv1.weight"
    assert net.torch_names["5.0.0.shortcut.1.running_var"] == "layer2.0.downsample.1.running_var"
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    _, comps = xntk.ntk(net, x, mode="trace", components=True)
    fc = {n: p for n, p in module.named_parameters() if n.startswith(("fc.", "layer4.0.bn2."))}
    # the head and last BatchNorm through autograd: Θ_p = Σ_o J_p J_pᵀ per sample pair
    out = module(x)
    for name, p in fc.items():
        rows = []
        for i in range(2):
            for o in range(2):
                g, = torch.autograd.grad(out[i, o], p, retain_graph=True)
                rows.append(g.reshape(-1))
        J = torch.stack(rows).reshape(2, 2, -1)
        theta = torch.einsum("iof,jof->ij", J, J).numpy()
        back = {t: k for k, t in net.torch_names.items()}
        assert rel_error(comps[back[name]], theta) <= TOLERANCE[torch.float64], name
