"""BERT text encoder with the architecture of Hugging Face `BertModel`.

transformers 5 ships no Flax models, so this is a re-implementation. Variable names
follow the old HF Flax BERT (`flax_model.msgpack`) layout, e.g.
`encoder/layer/0/attention/self/query/kernel`, and `torch_key` maps each of them onto
the PyTorch checkpoint key, so ClinicalBERT-style checkpoints load without a table.

Attention uses `jax.nn.dot_product_attention`, whose default (`implementation=None`) is
XLA's unfused einsum-softmax-einsum, never cuDNN. `attention_impl` picks it: 'xla', 'cudnn'
(cuDNN's fused flash attention: bf16/fp16 compute on an NVIDIA GPU), or 'auto' (cuDNN where
it applies, else XLA; `resolve_attention_impl`). The cuDNN path takes the padding as
per-example key lengths (`key_value_seq_lengths` = attention_mask.sum(-1)), which assumes
right-padded masks (the tokenizers here pad right); the XLA path uses the dense mask and
is exact for any mask. `jax.nn.dot_product_attention` cannot drop out attention
probabilities, so when `deterministic=False` and `attention_probs_dropout_prob > 0` the
explicit softmax path `softmax_attention` is used instead, whatever `attention_impl`; the
paths agree when no dropout is applied.
"""

import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from transformers import BertConfig

Dtype = Any

_ACTIVATIONS: dict[str, Callable[[jnp.ndarray], jnp.ndarray]] = {
    "gelu": functools.partial(jax.nn.gelu, approximate=False),  # HF 'gelu' is erf
    "gelu_new": functools.partial(jax.nn.gelu, approximate=True),
    "gelu_pytorch_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "tanh": jnp.tanh,
}


ATTENTION_IMPLS = ("auto", "xla", "cudnn")


def _on_cuda_gpu() -> bool:
    """True when the default backend is an NVIDIA GPU of compute capability >= 8.0
    (cuDNN's fused flash attention needs Ampere or newer)."""
    try:
        device = jax.devices()[0]
    except RuntimeError:
        return False
    if device.platform != "gpu" or "cuda" not in str(getattr(device.client, "platform_version", "")).lower():
        return False
    try:
        major, minor = (int(x) for x in str(device.compute_capability).split(".")[:2])
    except (AttributeError, ValueError):
        return False
    return (major, minor) >= (8, 0)


@functools.cache
def _cudnn_attention_compiles(dtype_name: str, head_dim: int) -> bool:
    """Compiles a small padded cuDNN attention forward and backward once per (dtype, head
    dim): a jax/cuDNN combination that cannot build it makes 'auto' fall back to XLA
    instead of failing the whole train step. Ahead-of-time lowering, so it is safe to call
    while another function is being traced."""
    dtype = jnp.dtype(dtype_name)
    qkv = jax.ShapeDtypeStruct((2, 16, 2, head_dim), dtype)
    lengths = jax.ShapeDtypeStruct((2,), jnp.int32)

    def loss(q, k, v, kv_len):
        out = jax.nn.dot_product_attention(q, k, v, key_value_seq_lengths=kv_len, implementation="cudnn")
        return jnp.sum(out.astype(jnp.float32))

    try:
        jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(qkv, qkv, qkv, lengths).compile()
        return True
    except Exception as e:  # noqa: BLE001 - any failure means: use XLA
        logging.getLogger(__name__).warning(
            "cuDNN attention unavailable (%s: %s); using XLA attention", type(e).__name__, str(e)[:200]
        )
        return False


def resolve_attention_impl(impl: str, dtype: Any, head_dim: int) -> str:
    """The concrete attention implementation, 'xla' or 'cudnn', for `impl`.

    'auto' is 'cudnn' when the default backend is an NVIDIA GPU (compute capability 8.0+),
    the compute dtype is bfloat16 or float16, the head dim is a multiple of 8 and at most
    128 (cuDNN's flash-attention limits; 256 on Hopper, 128 is safe everywhere) and a small
    cuDNN attention compiles; otherwise 'xla'.
    """
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f"attention_impl must be one of {ATTENTION_IMPLS}, got {impl!r}")
    if impl != "auto":
        return impl
    dtype = jnp.dtype(dtype)
    if dtype not in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16)) or head_dim % 8 or head_dim > 128:
        return "xla"
    if not _on_cuda_gpu():
        return "xla"
    return "cudnn" if _cudnn_attention_compiles(dtype.name, head_dim) else "xla"


def padded_attention(
    q: jnp.ndarray,
    k: jnp.ndarray,
    v: jnp.ndarray,
    mask: jnp.ndarray,
    *,
    implementation: str,
    use_lengths: bool | None = None,
) -> jnp.ndarray:
    """`jax.nn.dot_product_attention` under a key padding mask.

    Args:
      q, k, v: [B, L, N, D].
      mask: bool [B, 1, 1, L], True on real (key) tokens.
      implementation: 'xla' or 'cudnn'.
      use_lengths: pass the padding as `key_value_seq_lengths` (mask.sum(-1), exact for
        right-padded masks) instead of the dense mask; default: only for 'cudnn', whose
        fused kernel takes padding that way (a dense mask would become an additive bias).

    Returns:
      [B, L, N, D] in the dtype of `q`.
    """
    if use_lengths is None:
        use_lengths = implementation == "cudnn"
    if use_lengths:
        lengths = jnp.sum(mask, axis=-1, dtype=jnp.int32).reshape(mask.shape[0])
        return jax.nn.dot_product_attention(q, k, v, key_value_seq_lengths=lengths, implementation=implementation)
    return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=implementation)


def softmax_attention(
    q: jnp.ndarray, k: jnp.ndarray, v: jnp.ndarray, mask: jnp.ndarray, dropout: Callable | None = None
) -> jnp.ndarray:
    """Scaled dot-product attention written out, so probabilities can be dropped out.

    Args:
      q, k, v: [B, L, N, D].
      mask: bool, broadcastable to [B, N, L, L]; False keys get zero weight.
      dropout: optional function applied to the probabilities [B, N, L, L].

    Returns:
      [B, L, N, D] in the dtype of `v`.
    """
    scale = 1.0 / np.sqrt(q.shape[-1])
    logits = jnp.einsum("bqnd,bknd->bnqk", q, k, preferred_element_type=jnp.float32)
    # min-float rather than -inf: a fully padded row then gets a uniform (finite)
    # distribution, as in HF, instead of NaN.
    logits = jnp.where(mask, logits * scale, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1)
    if dropout is not None:
        probs = dropout(probs)
    return jnp.einsum("bnqk,bknd->bqnd", probs.astype(v.dtype), v)


class _Module(nn.Module):
    """Common fields and constructors (HF init: N(0, initializer_range), zero bias)."""

    config: BertConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    # Resolved by `Bert` to 'xla' or 'cudnn' before it reaches the layers.
    attention_impl: str = "auto"

    def _kw(self) -> dict:
        """The fields every submodule shares."""
        return dict(
            config=self.config, dtype=self.dtype, param_dtype=self.param_dtype, attention_impl=self.attention_impl
        )

    def _dense(self, features: int, name: str) -> nn.Dense:
        return nn.Dense(
            features,
            kernel_init=nn.initializers.normal(self.config.initializer_range),
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name=name,
        )

    def _layer_norm(self) -> nn.LayerNorm:
        # Two-pass variance, as torch, for numerical parity.
        return nn.LayerNorm(
            epsilon=self.config.layer_norm_eps,
            use_fast_variance=False,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="LayerNorm",
        )


class _Embeddings(_Module):
    @nn.compact
    def __call__(self, input_ids, token_type_ids, deterministic: bool):
        cfg = self.config

        def embed(num: int, name: str) -> nn.Embed:
            return nn.Embed(
                num,
                cfg.hidden_size,
                embedding_init=nn.initializers.normal(cfg.initializer_range),
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name=name,
            )

        positions = jnp.arange(input_ids.shape[-1])[None, :]
        x = (
            embed(cfg.vocab_size, "word_embeddings")(input_ids)
            + embed(cfg.max_position_embeddings, "position_embeddings")(positions)
            + embed(cfg.type_vocab_size, "token_type_embeddings")(token_type_ids)
        )
        x = self._layer_norm()(x)
        return nn.Dropout(cfg.hidden_dropout_prob)(x, deterministic=deterministic)


class _SelfAttention(_Module):
    @nn.compact
    def __call__(self, x, mask, deterministic: bool):
        cfg = self.config
        num_heads = cfg.num_attention_heads
        head_dim = cfg.hidden_size // num_heads
        split = lambda t: t.reshape(*t.shape[:-1], num_heads, head_dim)
        q = split(self._dense(cfg.hidden_size, "query")(x))
        k = split(self._dense(cfg.hidden_size, "key")(x))
        v = split(self._dense(cfg.hidden_size, "value")(x))
        rate = cfg.attention_probs_dropout_prob
        if not deterministic and rate > 0:
            dropout = functools.partial(nn.Dropout(rate), deterministic=False)
            out = softmax_attention(q, k, v, mask, dropout)
        else:
            impl = resolve_attention_impl(self.attention_impl, q.dtype, head_dim)
            out = padded_attention(q, k, v, mask, implementation=impl)
        return out.reshape(*out.shape[:-2], cfg.hidden_size)


class _DenseAddNorm(_Module):
    """dense -> dropout -> + residual -> LayerNorm (BertSelfOutput and BertOutput)."""

    @nn.compact
    def __call__(self, x, residual, deterministic: bool):
        x = self._dense(self.config.hidden_size, "dense")(x)
        x = nn.Dropout(self.config.hidden_dropout_prob)(x, deterministic=deterministic)
        return self._layer_norm()(x + residual)


class _Attention(_Module):
    @nn.compact
    def __call__(self, x, mask, deterministic: bool):
        kw = self._kw()
        y = _SelfAttention(**kw, name="self")(x, mask, deterministic)
        return _DenseAddNorm(**kw, name="output")(y, x, deterministic)


class _Intermediate(_Module):
    @nn.compact
    def __call__(self, x):
        act = self.config.hidden_act
        if act not in _ACTIVATIONS:
            raise ValueError(f"Unsupported hidden_act {act!r}; known: {sorted(_ACTIVATIONS)}")
        return _ACTIVATIONS[act](self._dense(self.config.intermediate_size, "dense")(x))


class _Layer(_Module):
    """One post-LN transformer layer (HF BertLayer)."""

    @nn.compact
    def __call__(self, x, mask, deterministic: bool):
        # `deterministic` is positional so nn.remat can mark it static (argnum 3).
        kw = self._kw()
        x = _Attention(**kw, name="attention")(x, mask, deterministic)
        h = _Intermediate(**kw, name="intermediate")(x)
        return _DenseAddNorm(**kw, name="output")(h, x, deterministic)


class _LayerStack(_Module):
    """Holds layers named '0', '1', ... so paths read `encoder/layer/{i}/...`."""

    remat: bool = False

    @nn.compact
    def __call__(self, x, mask, deterministic: bool):
        layer_cls = nn.remat(_Layer, static_argnums=(3,)) if self.remat else _Layer
        for i in range(self.config.num_hidden_layers):
            x = layer_cls(**self._kw(), name=str(i))(x, mask, deterministic)
        return x


class _Encoder(_Module):
    remat: bool = False

    @nn.compact
    def __call__(self, x, mask, deterministic: bool):
        return _LayerStack(**self._kw(), remat=self.remat, name="layer")(x, mask, deterministic)


class _Pooler(_Module):
    @nn.compact
    def __call__(self, x):
        return jnp.tanh(self._dense(self.config.hidden_size, "dense")(x[:, 0]))


class Bert(_Module):
    """HF `BertModel` in Flax.

    Attributes:
      config: `transformers.BertConfig` (sizes, hidden_act, dropout rates, layer_norm_eps,
        initializer_range).
      dtype / param_dtype: compute and parameter dtypes; outputs are float32.
      attention_impl: 'auto' | 'xla' | 'cudnn' (module docstring; `resolve_attention_impl`).
      remat: rematerialise each layer in the backward pass to save memory.
      add_pooling_layer: also create `pooler/dense` and return the pooled [CLS] vector.
    """

    remat: bool = False
    add_pooling_layer: bool = False

    @nn.compact
    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, *, deterministic: bool = True):
        """Encodes token ids.

        Args:
          input_ids: int [B, L].
          attention_mask: [B, L], 1 for real tokens, 0 for padding (default: all ones).
          token_type_ids: int [B, L] (default: zeros).
          deterministic: disables dropout; when False an rng named 'dropout' is needed.

        Returns:
          last hidden state float32 [B, L, H]; with `add_pooling_layer`, the tuple
          (last hidden state [B, L, H], pooled tanh(dense(h[:, 0])) [B, H]), as HF's
          `last_hidden_state` and `pooler_output`.
        """
        if attention_mask is None:
            attention_mask = jnp.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        # [B, 1, 1, L]: the same key mask for every head and query.
        mask = jnp.asarray(attention_mask, bool)[:, None, None, :]
        head_dim = self.config.hidden_size // self.config.num_attention_heads
        kw = dict(self._kw(), attention_impl=resolve_attention_impl(self.attention_impl, self.dtype, head_dim))
        x = _Embeddings(**kw, name="embeddings")(input_ids, token_type_ids, deterministic)
        x = _Encoder(**kw, remat=self.remat, name="encoder")(x, mask, deterministic)
        if not self.add_pooling_layer:
            return x.astype(jnp.float32)
        pooled = _Pooler(**kw, name="pooler")(x)
        return x.astype(jnp.float32), pooled.astype(jnp.float32)


# ----------------------------------------------------------------------------
# PyTorch checkpoint conversion.

_TORCH_LEAF = {"kernel": "weight", "scale": "weight", "embedding": "weight", "bias": "bias"}


def torch_key(path: Sequence[str]) -> str:
    """PyTorch `BertModel` key of a Flax param path (relative to 'params').

    E.g. ('encoder', 'layer', '0', 'attention', 'self', 'query', 'kernel') ->
    'encoder.layer.0.attention.self.query.weight'.
    """
    *modules, leaf = path
    if leaf not in _TORCH_LEAF:
        raise ValueError(f"No PyTorch key for {'/'.join(path)}")
    return ".".join([*modules, _TORCH_LEAF[leaf]])


def torch_to_flax(path: Sequence[str], array: np.ndarray) -> np.ndarray:
    """Converts the torch tensor of `path`: Linear weight [out, in] -> kernel [in, out].

    The transpose is its own inverse, so this also maps Flax -> torch.
    """
    return np.transpose(array) if path[-1] == "kernel" else np.asarray(array)
