"""FLOPs of fused attention counted as the explicit computation.

The benchmark's FLOP count (``count_flops`` of tools/analysis_tools/
benchmark.py) must not depend on how attention is computed: a model on
``F.scaled_dot_product_attention`` (the CPU's fused kernel, forward and
backward) and ``nn.MultiheadAttention`` (its fast path in eval without
grad; SDPA otherwise) has the count of the same model written out as
matmul, softmax, matmul. torch's ``FlopCounterMode`` alone misses those
kernels (every test here but the op-list one fails without the benchmark's
formulas).
"""
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from helpers.tool_runner import load_tool

bm = load_tool('analysis_tools/benchmark.py')

DIM, HEADS, B, LQ, LK = 32, 4, 2, 10, 6


class _OpLog(TorchDispatchMode):
    """Names of the aten ops dispatched inside the block."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func._overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def _explicit_attention(q, k, v, bias=None, causal=False):
    """softmax(q k^T / sqrt(d) + bias) v, as matmul, softmax, matmul."""
    logits = (q * q.shape[-1]**-0.5) @ k.transpose(-2, -1)
    if causal:
        lq, lk = logits.shape[-2:]
        logits = logits.masked_fill(torch.ones(lq, lk, dtype=torch.bool).triu(1),
                                    float('-inf'))
    if bias is not None:
        logits = logits + bias
    return logits.softmax(-1) @ v


def _heads(x):
    b, length, _ = x.shape
    return x.reshape(b, length, HEADS, DIM // HEADS).transpose(1, 2)


def _merge(x):
    b, _, length, _ = x.shape
    return x.transpose(1, 2).reshape(b, length, DIM)


class AttentionToy(nn.Module):
    """Self-attention with a mask, causal self-attention and cross-attention
    on SDPA, self-attention and cross-attention through
    nn.MultiheadAttention; ``fused=False`` computes every one explicitly
    from the same weights."""

    def __init__(self, fused: bool):
        super().__init__()
        self.fused = fused
        self.qkv = nn.Linear(DIM, 3 * DIM)
        self.q_cross = nn.Linear(DIM, DIM)
        self.kv_cross = nn.Linear(DIM, 2 * DIM)
        self.self_mha = nn.MultiheadAttention(DIM, HEADS, batch_first=True)
        self.cross_mha = nn.MultiheadAttention(DIM, HEADS, batch_first=True)
        self.out = nn.Linear(DIM, 1)

    def _sdpa(self, q, k, v, bias=None, causal=False):
        if self.fused:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, is_causal=causal)
        return _explicit_attention(q, k, v, bias, causal)

    def _mha(self, mha, query, key, value):
        if self.fused:
            return mha(query, key, value, need_weights=False)[0]
        wq, wk, wv = mha.in_proj_weight.chunk(3)
        bq, bk, bv = mha.in_proj_bias.chunk(3)
        out = _explicit_attention(_heads(F.linear(query, wq, bq)), _heads(F.linear(key, wk, bk)),
                                  _heads(F.linear(value, wv, bv)))
        return mha.out_proj(_merge(out))

    def forward(self, x, text, bias):
        q, k, v = (_heads(t) for t in self.qkv(x).chunk(3, -1))
        x = x + _merge(self._sdpa(q, k, v, bias))
        q, k, v = (_heads(t) for t in self.qkv(x).chunk(3, -1))
        x = x + _merge(self._sdpa(q, k, v, causal=True))
        k, v = (_heads(t) for t in self.kv_cross(text).chunk(2, -1))
        x = x + _merge(self._sdpa(_heads(self.q_cross(x)), k, v))
        x = x + self._mha(self.self_mha, x, x, x)
        x = x + self._mha(self.cross_mha, x, text, text)
        return self.out(x).mean()


def _pair():
    """The fused toy and the explicit one with the same weights, inputs."""
    fused = AttentionToy(fused=True)
    explicit = AttentionToy(fused=False)
    explicit.load_state_dict(fused.state_dict())
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(B, LQ, DIM, generator=gen)
    text = torch.randn(B, LK, DIM, generator=gen)
    bias = torch.zeros(LQ, LQ).masked_fill(torch.rand(LQ, LQ, generator=gen) < 0.2,
                                           float('-inf')).fill_diagonal_(0.)
    return fused, explicit, (x, text, bias)


def _matmul_flops_by_hand() -> int:
    """Forward FLOPs of the toy, from the layer sizes."""
    e, d = DIM, DIM
    linears = (2 * B * LQ * e * 3 * e * 2  # two qkv projections
               + 2 * B * LQ * e * e + 2 * B * LK * e * 2 * e  # cross q, kv
               + 2 * B * LQ * e * e * 4  # self MHA: q, k, v, out
               + 2 * B * LQ * e * e * 2 + 2 * B * LK * e * e * 2  # cross MHA
               + 2 * B * LQ * e * 1)  # out
    attention = 4 * B * LQ * LQ * d * 3 + 4 * B * LQ * LK * d * 2
    return linears + attention


def test_the_fused_model_takes_the_fused_kernels():
    """What the comparisons below rely on: the fused toy really runs the
    CPU's fused kernel (and its backward), and nn.MultiheadAttention's fast
    path in eval without grad; the explicit toy runs none of them."""
    fused, explicit, inputs = _pair()
    fused.eval()
    with torch.no_grad(), _OpLog() as log:
        fused(*inputs)
    assert log.ops.count('_native_multi_head_attention') == 1  # self-attention
    assert '_scaled_dot_product_flash_attention_for_cpu' in log.ops
    fused.train()
    with _OpLog() as log:
        fused(*inputs).backward()
    assert '_native_multi_head_attention' not in log.ops
    assert log.ops.count('_scaled_dot_product_flash_attention_for_cpu') == 5
    assert log.ops.count('_scaled_dot_product_flash_attention_for_cpu_backward') == 5
    explicit.eval()
    with torch.no_grad(), _OpLog() as log:
        explicit(*inputs)
    assert not [op for op in log.ops if 'attention' in op]


def test_forward_count_of_fused_attention_equals_the_explicit_count():
    fused, explicit, inputs = _pair()
    fused.eval(), explicit.eval()
    with torch.no_grad():
        torch.testing.assert_close(fused(*inputs), explicit(*inputs))
        n_fused = bm.count_flops(lambda: fused(*inputs))
        n_explicit = bm.count_flops(lambda: explicit(*inputs))
    assert n_fused == n_explicit == _matmul_flops_by_hand()


def test_forward_backward_count_of_fused_attention_equals_the_explicit_count():
    fused, explicit, inputs = _pair()
    for model in (fused, explicit):
        model.eval()  # no dropout; with grad, MultiheadAttention runs SDPA
    n_fused = bm.count_flops(lambda: fused(*inputs).backward())
    n_explicit = bm.count_flops(lambda: explicit(*inputs).backward())
    assert n_fused == n_explicit
    # inputs need no grad: every matmul's backward but the first linears'
    # input gradient, i.e. about 3x the forward
    forward = _matmul_flops_by_hand()
    assert 2.5 * forward < n_fused < 3 * forward
    # the gradients agree, so both computed the same function
    for a, b in zip(fused.parameters(), explicit.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5)


def test_fused_kernel_count_is_the_textbook_formula():
    """4 B H Lq Lk D forward, twice that backward, for one SDPA call."""
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(B, HEADS, LQ, 8, generator=gen, requires_grad=True)
    k = torch.randn(B, HEADS, LK, 8, generator=gen, requires_grad=True)
    v = torch.randn(B, HEADS, LK, 8, generator=gen, requires_grad=True)
    forward = 4 * B * HEADS * LQ * LK * 8
    assert bm.count_flops(lambda: F.scaled_dot_product_attention(q, k, v)) == forward
    assert bm.count_flops(
        lambda: F.scaled_dot_product_attention(q, k, v).sum().backward()) == 3 * forward
    # grouped-query attention: keys and values of fewer heads count as the
    # query's heads (the kernel broadcasts them)
    k2, v2 = k[:, :2].detach(), v[:, :2].detach()
    assert bm.count_flops(lambda: F.scaled_dot_product_attention(
        q.detach(), k2, v2, enable_gqa=True)) == forward


def test_transformer_encoder_layer_fast_path_counts_as_its_slow_path():
    layer = nn.TransformerEncoderLayer(DIM, HEADS, dim_feedforward=48, dropout=0.,
                                       batch_first=True)
    x = torch.randn(B, LQ, DIM)
    with torch.no_grad():
        layer.eval()
        with _OpLog() as log:
            fast_out = layer(x)
        assert '_transformer_encoder_layer_fwd' in log.ops
        fast = bm.count_flops(lambda: layer(x))
        layer.train()  # dropout 0: the same function, computed op by op
        with _OpLog() as log:
            slow_out = layer(x)
        assert '_transformer_encoder_layer_fwd' not in log.ops
        slow = bm.count_flops(lambda: layer(x))
    torch.testing.assert_close(fast_out, slow_out)
    assert fast == slow == (2 * B * LQ * DIM * DIM * 4 + 4 * B * LQ * LQ * DIM
                            + 2 * 2 * B * LQ * DIM * 48)


def _aten_attention_ops():
    """Every aten op of this torch build with attention in its name."""
    names = {name.split('::')[1].split('.')[0] for name in torch._C._dispatch_get_all_op_names()
             if name.startswith('aten::')}
    return sorted(n for n in names if 'attention' in n or 'multi_head' in n
                  or n == '_transformer_encoder_layer_fwd')


def test_every_attention_kernel_of_this_torch_has_a_formula():
    """A torch upgrade that adds an attention kernel fails here until it is
    counted (or knowingly left out)."""
    from torch.utils.flop_counter import flop_registry
    counted = set(flop_registry) | set(bm.attention_flop_formulas())
    names = _aten_attention_ops()
    assert '_scaled_dot_product_flash_attention_for_cpu' in names
    # composite: they decompose, before the flop counter sees them, into
    # counted ops (the fused kernels, or matmul + softmax + matmul)
    composite = {'scaled_dot_product_attention', '_scaled_dot_product_attention_math'}
    missing = [n for n in names if n not in composite
               and getattr(torch.ops.aten, n) not in counted]
    assert not missing, missing
    # CUDA's kernels (flash, efficient, cudnn; forward and backward) are
    # torch's own formulas, the same textbook count
    for name in ('_scaled_dot_product_flash_attention', '_scaled_dot_product_efficient_attention',
                 '_scaled_dot_product_cudnn_attention'):
        for suffix in ('', '_backward'):
            assert getattr(torch.ops.aten, name + suffix) in flop_registry
    shape = (B, HEADS, LQ, 8)
    formula = flop_registry[torch.ops.aten._scaled_dot_product_flash_attention]
    assert formula(torch.empty(shape), torch.empty(shape), torch.empty(shape)) == \
        4 * math.prod(shape) * LQ


def test_packed_variable_length_inputs_count_each_sample():
    """cuDNN's kernel called on packed (sum L) x H x D rows with offsets:
    each sample's Lq x Lk, not the padded maximum."""
    q, k, v = torch.empty(7, 2, 8), torch.empty(9, 2, 8), torch.empty(9, 2, 8)
    cum_q, cum_k = torch.tensor([0, 3, 7]), torch.tensor([0, 4, 9])
    per_pair = 4 * 2 * 8  # 4 H D per (query, key) pair
    forward = per_pair * (3 * 4 + 4 * 5)
    assert bm._cudnn_forward_flops(q, k, v, None, cum_q, cum_k) == forward
    dense = torch.empty(2, 2, 5, 8)
    assert bm._cudnn_forward_flops(dense, dense, dense, None, None, None) == per_pair * 2 * 25
    assert bm._cudnn_backward_flops(q, q, k, v, q, None, None, None, None, cum_q,
                                    cum_k) == 2 * forward
