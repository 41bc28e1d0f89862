#!/usr/bin/env python3
"""An independent implementation of radraft's model format in PyTorch.

Builds the network that a radraft model.json describes out of torch.nn.functional ops
(batch norm NOT folded, activations NOT fused: the plain reading of the description), loads
the weights with a hand-written safetensors reader (struct + json, no safetensors package),
and runs it. Used by the cross-check test (tests/integration/test_nn_torch.c) and the
benchmark (tests/bench/bench_encoder.sh).

  torch_ref.py --model DIR --input IN.bin --batch N --out OUT.bin [--threads T]
      IN.bin: N x C x H x W float32 (little-endian), OUT.bin: for each image, the
      "embedding" then the "scores" output (float32).
  torch_ref.py --model DIR --bench --batch N --threads T [--iters K]
      prints {"engine": "torch", ...} timing JSON like `radraft model bench`.
"""
import argparse
import json
import os
import struct
import sys
import time

import torch
import torch.nn.functional as F

DTYPES = {"F32": (torch.float32, 4), "F16": (torch.float16, 2)}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (hlen,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + hlen].decode("utf-8"))
    base = 8 + hlen
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, size = DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        buf = bytearray(data[base + begin : base + end])
        t = torch.frombuffer(buf, dtype=dtype) if buf else torch.zeros(0, dtype=dtype)
        tensors[name] = t.reshape(info["shape"]).to(torch.float32).clone()
    return tensors


def pair(v, default=None):
    if v is None:
        v = default
    return tuple(v) if isinstance(v, list) else (v, v)


class Net(torch.nn.Module):
    def __init__(self, desc, weights):
        super().__init__()
        self.desc = desc
        self.w = weights

    def forward(self, x):
        vals = {self.desc["input"]["name"]: x}
        for nd in self.desc["graph"]:
            op, name = nd["op"], nd["name"]
            ins = [vals[i] for i in nd["inputs"]]
            a = ins[0]
            if op == "conv2d":
                y = F.conv2d(a, self.w[name + ".weight"], self.w.get(name + ".bias") if nd.get("bias") else None,
                             stride=pair(nd.get("stride"), 1), padding=pair(nd.get("padding"), 0),
                             groups=nd.get("groups", 1))
            elif op == "batchnorm":
                y = F.batch_norm(a, self.w[name + ".running_mean"], self.w[name + ".running_var"],
                                 self.w[name + ".weight"], self.w[name + ".bias"], training=False,
                                 eps=nd.get("eps", 1e-5))
            elif op == "relu":
                y = F.relu(a)
            elif op == "silu":
                y = F.silu(a)
            elif op == "sigmoid":
                y = torch.sigmoid(a)
            elif op == "maxpool":
                k = pair(nd["kernel"])
                y = F.max_pool2d(a, k, stride=pair(nd.get("stride"), k) if nd.get("stride") else k,
                                 padding=pair(nd.get("padding"), 0))
            elif op == "avgpool":
                k = pair(nd["kernel"])
                y = F.avg_pool2d(a, k, stride=pair(nd.get("stride"), k) if nd.get("stride") else k,
                                 padding=pair(nd.get("padding"), 0),
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
                y = F.linear(a.flatten(1), self.w[name + ".weight"],
                             self.w.get(name + ".bias") if nd.get("bias", True) else None)
                y = y.reshape(y.shape[0], -1, 1, 1)
            elif op == "l2norm":
                flat = a.flatten(1)
                y = F.normalize(flat, p=2.0, dim=1, eps=nd.get("eps", 1e-12)).reshape(a.shape)
            else:
                raise ValueError("unknown op " + op)
            if "shape" in nd and list(y.shape[1:]) != nd["shape"]:
                raise ValueError("%s: shape %s, description says %s" % (name, list(y.shape[1:]), nd["shape"]))
            vals[name] = y
        outs = self.desc["outputs"]
        return [vals[outs[k]].flatten(1) for k in ("embedding", "scores") if k in outs]


def load(model):
    path = os.path.join(model, "model.json") if os.path.isdir(model) else model
    with open(path) as f:
        desc = json.load(f)
    weights = read_safetensors(os.path.join(os.path.dirname(path), desc["weights"]))
    return desc, Net(desc, weights).eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--input")
    ap.add_argument("--out")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--iters", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    desc, net = load(args.model)
    c, h, w = desc["input"]["channels"], desc["input"]["height"], desc["input"]["width"]
    with torch.inference_mode():
        if args.bench:
            x = torch.rand(args.batch, c, h, w) * 4 - 2
            times = []
            for i in range(3 + args.iters):
                t0 = time.perf_counter()
                net(x)
                if i >= 3:
                    times.append((time.perf_counter() - t0) * 1000)
            times.sort()
            med = times[len(times) // 2]
            print(json.dumps({"engine": "torch", "model": desc.get("name", ""), "batch": args.batch,
                              "threads": torch.get_num_threads(), "iters": args.iters,
                              "ms_per_batch": round(med, 3), "min_ms": round(times[0], 3),
                              "images_per_s": round(1000.0 * args.batch / med, 2),
                              "torch": torch.__version__}))
            return 0
        with open(args.input, "rb") as f:
            raw = bytearray(f.read())
        x = torch.frombuffer(raw, dtype=torch.float32).reshape(args.batch, c, h, w)
        outs = net(x)
        rows = torch.cat(outs, dim=1).contiguous()
        with open(args.out, "wb") as f:
            f.write(rows.numpy().tobytes() if hasattr(rows, "numpy") else bytes(rows.untyped_storage()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
