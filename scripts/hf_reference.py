#!/usr/bin/env python3
"""Independent numpy forward pass of a Hugging Face LLaMA folder.

Reads DIR/config.json and DIR/model.safetensors (parsed here, numpy only) and
prints, as JSON, the logits (T, V) for the given token ids:

    python3 scripts/hf_reference.py DIR 3 1 4 1 5

It is written from the LlamaForCausalLM description, not from step-gpu, so
step-gpu's export can be checked against it (nn/hf's TestHFReferenceLogits):
  - RMSNorm: weight * x / sqrt(mean(x^2) + eps)
  - RoPE, rotate-half: inv_freq[i] = theta^(-2i/HS) for i < HS/2, repeated
    twice to length HS; cos/sin of position * inv_freq;
    q' = q*cos + rotate_half(q)*sin with rotate_half([a, b]) = [-b, a]
  - causal softmax attention scaled by 1/sqrt(HS), one head per HS slice
  - MLP: down(silu(gate(x)) * up(x)); linear y = x @ W.T with W (out, in)
Everything is computed in float64.
"""

import json
import struct
import sys

import numpy as np

DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "F64": np.dtype("<f8")}


def load_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    data = blob[8 + n :]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        lo, hi = e["data_offsets"]
        raw = data[lo:hi]
        if e["dtype"] == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=DTYPES[e["dtype"]])
        out[name] = arr.astype(np.float64).reshape(e["shape"])
    return out


def rms_norm(x, w, eps):
    return w * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def forward(cfg, w, ids):
    C = cfg["hidden_size"]
    NH = cfg["num_attention_heads"]
    HS = C // NH
    eps = cfg["rms_norm_eps"]
    theta = cfg.get("rope_theta", 10000.0)
    T = len(ids)

    inv_freq = theta ** (-np.arange(0, HS, 2, dtype=np.float64) / HS)  # (HS/2)
    ang = np.outer(np.arange(T, dtype=np.float64), inv_freq)  # (T, HS/2)
    ang = np.concatenate([ang, ang], axis=-1)  # (T, HS)
    cos, sin = np.cos(ang), np.sin(ang)
    mask = np.triu(np.full((T, T), -np.inf), k=1)

    x = w["model.embed_tokens.weight"][ids]  # (T, C)
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = (h @ w[p + "self_attn.q_proj.weight"].T).reshape(T, NH, HS).transpose(1, 0, 2)
        k = (h @ w[p + "self_attn.k_proj.weight"].T).reshape(T, NH, HS).transpose(1, 0, 2)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(T, NH, HS).transpose(1, 0, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        s = q @ k.transpose(0, 2, 1) / np.sqrt(HS) + mask  # (NH, T, T)
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        s = s / s.sum(axis=-1, keepdims=True)
        att = (s @ v).transpose(1, 0, 2).reshape(T, C)
        x = x + att @ w[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        g = h @ w[p + "mlp.gate_proj.weight"].T
        u = h @ w[p + "mlp.up_proj.weight"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ w[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w.get("lm_head.weight")
    if head is None or cfg.get("tie_word_embeddings", False):
        head = w["model.embed_tokens.weight"]
    return x @ head.T  # (T, V)


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: hf_reference.py DIR TOKEN_ID...")
    d = sys.argv[1]
    with open(d + "/config.json") as f:
        cfg = json.load(f)
    w = load_safetensors(d + "/model.safetensors")
    ids = np.array([int(t) for t in sys.argv[2:]])
    logits = forward(cfg, w, ids)
    json.dump(logits.tolist(), sys.stdout)
    print()


if __name__ == "__main__":
    main()
