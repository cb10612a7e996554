"""An independent, plain functional forward of the authors' network, written from the key list and
shapes in issue 3 and METHOD.md section 4. It reads a state dict in the authors' naming directly, so
a disagreement with exifkit's module would expose a mapping or architecture mistake."""

import torch
import torch.nn.functional as F

MEAN_LN = [32, 64, 64]


def _ln(x, s, name):
    return F.layer_norm(x, s[f"{name}.weight"].shape, s[f"{name}.weight"], s[f"{name}.bias"], eps=1e-5)


def reference_forward(s: dict, x: torch.Tensor) -> torch.Tensor:
    b, n, c, h, w = x.shape
    res = F.conv2d(x.reshape(b * n * c, 1, h, w), s["group1.hpf.weight"], padding=2).reshape(b * n, c * 30, h, w)
    y = F.conv2d(res, s["group1_b.0.weight"], s["group1_b.0.bias"], padding=1)
    y = torch.clamp(_ln(y, s, "group1_b.1"), -5, 5)
    for group, convs in (("group2", 4), ("group3", 2), ("group4", 2), ("group5", 2)):
        for k in range(convs):
            y = F.conv2d(y, s[f"{group}.{3 * k}.weight"], s[f"{group}.{3 * k}.bias"], padding=1)
            y = F.relu(_ln(y, s, f"{group}.{3 * k + 1}"))
        if group != "group5":
            y = F.avg_pool2d(y, 3, stride=2, padding=1)
    m = y.shape[2] * y.shape[3]
    f = y.reshape(b * n, 32, m)
    ihat = (-1.0 / m / m) * torch.ones(m, m) + (1.0 / m) * torch.eye(m)
    cov = f @ ihat @ f.transpose(1, 2)
    tr = cov.diagonal(dim1=1, dim2=2).sum(1).view(-1, 1, 1)
    a = cov / tr
    i3 = 3.0 * torch.eye(32).expand_as(a)
    zy = 0.5 * (i3 - a)
    yk, zk = a @ zy, zy
    for _ in range(3):
        zy = 0.5 * (i3 - zk @ yk)
        yk, zk = yk @ zy, zy @ zk
    root = 0.5 * yk @ (i3 - zk @ yk) * tr.sqrt()
    r, cidx = torch.triu_indices(32, 32)
    t = root[:, r, cidx].reshape(b, n, 528)
    for i in range(2):
        p = f"transformer.layers.{i}"
        u = _ln(t, s, f"{p}.0.norm")
        q, k, v = (u @ s[f"{p}.0.fn.to_qkv.weight"].T).chunk(3, dim=-1)
        q, k, v = (z.reshape(b, n, 4, 16).transpose(1, 2) for z in (q, k, v))
        att = torch.softmax(q @ k.transpose(-1, -2) * 16 ** -0.5, dim=-1) @ v
        att = att.transpose(1, 2).reshape(b, n, 64)
        t = t + att @ s[f"{p}.0.fn.to_out.0.weight"].T + s[f"{p}.0.fn.to_out.0.bias"]
        u = _ln(t, s, f"{p}.1.norm")
        hdn = F.gelu(u @ s[f"{p}.1.fn.net.0.weight"].T + s[f"{p}.1.fn.net.0.bias"])
        t = t + hdn @ s[f"{p}.1.fn.net.3.weight"].T + s[f"{p}.1.fn.net.3.bias"]
    return t[:, 0]


def synthetic_official_state(seed: int = 0) -> dict:
    """Every key and shape of the authors' extractor (issue 3's list), filled with random values."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.05):
        return torch.randn(*shape, generator=g) * scale

    from exifkit.model.srm import srm_kernels

    s = {"group1.hpf.weight": torch.tensor(srm_kernels(), dtype=torch.float32).unsqueeze(1),
         "group1_b.0.weight": r(32, 90, 3, 3), "group1_b.0.bias": r(32),
         "group1_b.1.weight": 1 + r(32, 64, 64), "group1_b.1.bias": r(32, 64, 64)}
    for group, convs, size in (("group2", 4, 64), ("group3", 2, 32), ("group4", 2, 16), ("group5", 2, 8)):
        for k in range(convs):
            s[f"{group}.{3 * k}.weight"], s[f"{group}.{3 * k}.bias"] = r(32, 32, 3, 3, scale=0.1), r(32)
            s[f"{group}.{3 * k + 1}.weight"] = 1 + r(32, size, size)
            s[f"{group}.{3 * k + 1}.bias"] = r(32, size, size)
    for i in range(2):
        p = f"transformer.layers.{i}"
        s.update({f"{p}.0.norm.weight": 1 + r(528), f"{p}.0.norm.bias": r(528),
                  f"{p}.0.fn.to_qkv.weight": r(192, 528), f"{p}.0.fn.to_out.0.weight": r(528, 64),
                  f"{p}.0.fn.to_out.0.bias": r(528), f"{p}.1.norm.weight": 1 + r(528), f"{p}.1.norm.bias": r(528),
                  f"{p}.1.fn.net.0.weight": r(128, 528), f"{p}.1.fn.net.0.bias": r(128),
                  f"{p}.1.fn.net.3.weight": r(528, 128), f"{p}.1.fn.net.3.bias": r(528)})
    return s
