#!/usr/bin/env python3
"""One training step of a radraft model in PyTorch, compared with radraft's training engine.

Reads the model (model.json + safetensors, batch norm unfolded), the batch and targets the C
test used, and the C side's results (c.safetensors: "loss", every parameter gradient as
"<name>.grad", every parameter after one AdamW step as "<name>.new", running statistics after
the forward as "<name>.new"). Runs the same step with torch autograd (batch norm in training
mode, momentum 0.1; BCE with logits, pos_weight, label smoothing, mean; torch.optim.AdamW
with weight decay on convolution and linear weights only), and exits 1 if anything differs
beyond the tolerance.

  torch_train_ref.py --model DIR --input X.bin --targets T.bin --batch N --c-out C.safetensors
                     --lr LR --wd WD --smoothing S --pos-weight W1,W2,...
"""
import argparse
import json
import os
import struct
import sys

import torch
import torch.nn.functional as F


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (hlen,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + hlen].decode("utf-8"))
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        buf = bytearray(data[8 + hlen + b : 8 + hlen + e])
        t = torch.frombuffer(buf, dtype=torch.float32) if buf else torch.zeros(0)
        out[name] = t.reshape(info["shape"]).clone()
    return out


def pair(v, d):
    v = d if v is None else v
    return tuple(v) if isinstance(v, list) else (v, v)


def forward(desc, w, x):
    vals = {desc["input"]["name"]: x}
    for nd in desc["graph"]:
        op, name = nd["op"], nd["name"]
        ins = [vals[i] for i in nd["inputs"]]
        a = ins[0]
        if op == "conv2d":
            y = F.conv2d(a, w[name + ".weight"], w.get(name + ".bias") if nd.get("bias") else None,
                         stride=pair(nd.get("stride"), 1), padding=pair(nd.get("padding"), 0),
                         groups=nd.get("groups", 1))
        elif op == "batchnorm":
            y = F.batch_norm(a, w[name + ".running_mean"], w[name + ".running_var"],
                             w[name + ".weight"], w[name + ".bias"], training=True, momentum=0.1,
                             eps=nd.get("eps", 1e-5))
        elif op == "relu":
            y = F.relu(a)
        elif op == "silu":
            y = F.silu(a)
        elif op == "sigmoid":
            y = torch.sigmoid(a)
        elif op in ("maxpool", "avgpool"):
            k = pair(nd["kernel"], None)
            s = pair(nd.get("stride"), k) if nd.get("stride") else k
            p = pair(nd.get("padding"), 0)
            if op == "maxpool":
                y = F.max_pool2d(a, k, stride=s, padding=p)
            else:
                y = F.avg_pool2d(a, k, stride=s, padding=p,
                                 count_include_pad=nd.get("count_include_pad", True))
        elif op == "gap":
            y = a.mean(dim=(2, 3), keepdim=True)
        elif op == "add":
            y = ins[0]
            for t in ins[1:]:
                y = y + t
        elif op == "concat":
            y = torch.cat(ins, dim=1)
        elif op == "linear":
            y = F.linear(a.flatten(1), w[name + ".weight"],
                         w.get(name + ".bias") if nd.get("bias", True) else None)
            y = y.reshape(y.shape[0], -1, 1, 1)
        elif op == "l2norm":
            y = F.normalize(a.flatten(1), p=2.0, dim=1, eps=nd.get("eps", 1e-12)).reshape(a.shape)
        else:
            raise ValueError(op)
        vals[name] = y
    scores = desc["outputs"]["scores"]
    logits_node = next(nd for nd in desc["graph"] if nd["name"] == scores)["inputs"][0]
    return vals[logits_node].flatten(1)


def main():
    ap = argparse.ArgumentParser()
    for k in ("--model", "--input", "--targets", "--c-out", "--pos-weight"):
        ap.add_argument(k, required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--lr", type=float, required=True)
    ap.add_argument("--wd", type=float, required=True)
    ap.add_argument("--smoothing", type=float, required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    with open(os.path.join(a.model, "model.json")) as f:
        desc = json.load(f)
    w = read_safetensors(os.path.join(a.model, desc["weights"]))
    c = read_safetensors(a.c_out)
    inp = desc["input"]
    shape = (a.batch, inp["channels"], inp["height"], inp["width"])
    x = torch.frombuffer(bytearray(open(a.input, "rb").read()), dtype=torch.float32).reshape(shape)
    t = torch.frombuffer(bytearray(open(a.targets, "rb").read()), dtype=torch.float32)
    t = t.reshape(a.batch, -1)
    pw = torch.tensor([float(v) for v in a.pos_weight.split(",")])

    def step(dtype):
        """The loss, gradients, running statistics and AdamW result computed in `dtype`."""
        ww = {k: v.clone().to(dtype) for k, v in w.items()}
        params = {k: v.requires_grad_(True) for k, v in ww.items()
                  if not k.endswith("running_mean") and not k.endswith("running_var")}
        z = forward(desc, ww, x.to(dtype))
        ts = (t * (1 - a.smoothing) + 0.5 * a.smoothing).to(dtype)
        loss = F.binary_cross_entropy_with_logits(z, ts, pos_weight=pw.to(dtype),
                                                  reduction="mean")
        loss.backward()
        out = {"loss": loss.detach().reshape(1)}
        for k, p in params.items():
            # A parameter off the path to the scores (the embedding branch) has no gradient.
            out[k + ".grad"] = p.grad if p.grad is not None else torch.zeros_like(p)
        for k in ww:
            if k.endswith("running_mean") or k.endswith("running_var"):
                out[k + ".new"] = ww[k].detach().clone()
        decay = [p for k, p in params.items() if k.endswith(".weight") and p.dim() >= 2]
        other = [p for k, p in params.items() if not (k.endswith(".weight") and p.dim() >= 2)]
        for p in other + decay:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd},
                                 {"params": other, "weight_decay": 0.0}],
                                lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
        opt.step()
        for k, p in params.items():
            out[k + ".new"] = p.detach().clone()
        return out

    ref = step(torch.float64)
    f32 = step(torch.float32)
    bad = 0
    worst = 0.0
    for k, r in ref.items():
        mine = c[k].double().reshape(r.shape)
        other = f32[k].double()
        if k.endswith(".new") and (k[:-4] + ".grad") in ref:
            # A gradient within rounding of zero can flip the first Adam step's sign (a jump
            # of 2 lr); those coordinates are left out of the weight comparison.
            g = ref[k[:-4] + ".grad"]
            keep = g.abs() > 1e-4 * (g.abs().max() + 1e-30)
            mine, other, r = mine[keep], other[keep], r[keep]
        if r.numel() == 0:
            continue
        scale = r.abs().max().item()
        err_c = (mine - r).abs().max().item()
        err_t = (other - r).abs().max().item()
        # Float32 rounding is amplified through the batch norm backward passes: the C
        # engine passes when it is within 1e-4 relative of the float64 reference, or no
        # further from it than 4x PyTorch's own float32 result is.
        lim = max(1e-7 + 1e-4 * scale, 4 * err_t)
        if k.endswith(".grad") and scale > 0:
            worst = max(worst, err_c / max(scale, 1e-6))
        if not err_c <= lim:
            bad += 1
            print("DIFF %s: |c - ref64| %.3g, |torch32 - ref64| %.3g, scale %.3g"
                  % (k, err_c, err_t, scale))
    print("compared %d tensors; largest relative gradient difference %.3g; %d differ"
          % (len(ref), worst, bad))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
