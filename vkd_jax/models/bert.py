"""BERT text encoder with the architecture of Hugging Face `BertModel`.

transformers 5 ships no Flax models, so this is a re-implementation. Variable names
follow the old HF Flax BERT (`flax_model.msgpack`) layout, e.g.
`encoder/layer/0/attention/self/query/kernel`, and `torch_key` maps each of them onto
the PyTorch checkpoint key, so ClinicalBERT-style checkpoints load without a table.

Attention uses `jax.nn.dot_product_attention` (fused kernels where available). That
function cannot drop out attention probabilities, so when `deterministic=False` and
`attention_probs_dropout_prob > 0` the explicit softmax path `softmax_attention` is used
instead; the two agree when no dropout is applied.
"""

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from transformers import BertConfig

Dtype = Any

_ACTIVATIONS: dict[str, Callable[[jnp.ndarray], jnp.ndarray]] = {
    'gelu': functools.partial(jax.nn.gelu, approximate=False),  # HF 'gelu' is erf
    'gelu_new': functools.partial(jax.nn.gelu, approximate=True),
    'gelu_pytorch_tanh': functools.partial(jax.nn.gelu, approximate=True),
    'relu': jax.nn.relu,
    'silu': jax.nn.silu,
    'swish': jax.nn.silu,
    'tanh': jnp.tanh,
}


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
    logits = jnp.einsum('bqnd,bknd->bnqk', q, k, preferred_element_type=jnp.float32)
    # min-float rather than -inf: a fully padded row then gets a uniform (finite)
    # distribution, as in HF, instead of NaN.
    logits = jnp.where(mask, logits * scale, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1)
    if dropout is not None:
        probs = dropout(probs)
    return jnp.einsum('bnqk,bknd->bqnd', probs.astype(v.dtype), v)


class _Module(nn.Module):
    """Common fields and constructors (HF init: N(0, initializer_range), zero bias)."""

    config: BertConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

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
            name='LayerNorm',
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
            embed(cfg.vocab_size, 'word_embeddings')(input_ids)
            + embed(cfg.max_position_embeddings, 'position_embeddings')(positions)
            + embed(cfg.type_vocab_size, 'token_type_embeddings')(token_type_ids)
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
        q = split(self._dense(cfg.hidden_size, 'query')(x))
        k = split(self._dense(cfg.hidden_size, 'key')(x))
        v = split(self._dense(cfg.hidden_size, 'value')(x))
        rate = cfg.attention_probs_dropout_prob
        if not deterministic and rate > 0:
            dropout = functools.partial(nn.Dropout(rate), deterministic=False)
            out = softmax_attention(q, k, v, mask, dropout)
        else:
            out = jax.nn.dot_product_attention(q, k, v, mask=mask)
        return out.reshape(*out.shape[:-2], cfg.hidden_size)


class _DenseAddNorm(_Module):
    """dense -> dropout -> + residual -> LayerNorm (BertSelfOutput and BertOutput)."""

    @nn.compact
    def __call__(self, x, residual, deterministic: bool):
        x = self._dense(self.config.hidden_size, 'dense')(x)
        x = nn.Dropout(self.config.hidden_dropout_prob)(x, deterministic=deterministic)
        return self._layer_norm()(x + residual)


class _Attention(_Module):
    @nn.compact
    def __call__(self, x, mask, deterministic: bool):
        kw = dict(config=self.config, dtype=self.dtype, param_dtype=self.param_dtype)
        y = _SelfAttention(**kw, name='self')(x, mask, deterministic)
        return _DenseAddNorm(**kw, name='output')(y, x, deterministic)


class _Intermediate(_Module):
    @nn.compact
    def __call__(self, x):
        act = self.config.hidden_act
        if act not in _ACTIVATIONS:
            raise ValueError(f'Unsupported hidden_act {act!r}; known: {sorted(_ACTIVATIONS)}')
        return _ACTIVATIONS[act](self._dense(self.config.intermediate_size, 'dense')(x))


class _Layer(_Module):
    """One post-LN transformer layer (HF BertLayer)."""

    @nn.compact
    def __call__(self, x, mask, deterministic: bool):
        # `deterministic` is positional so nn.remat can mark it static (argnum 3).
        kw = dict(config=self.config, dtype=self.dtype, param_dtype=self.param_dtype)
        x = _Attention(**kw, name='attention')(x, mask, deterministic)
        h = _Intermediate(**kw, name='intermediate')(x)
        return _DenseAddNorm(**kw, name='output')(h, x, deterministic)


class _LayerStack(_Module):
    """Holds layers named '0', '1', ... so paths read `encoder/layer/{i}/...`."""

    remat: bool = False

    @nn.compact
    def __call__(self, x, mask, deterministic: bool):
        layer_cls = nn.remat(_Layer, static_argnums=(3,)) if self.remat else _Layer
        for i in range(self.config.num_hidden_layers):
            x = layer_cls(config=self.config, dtype=self.dtype, param_dtype=self.param_dtype, name=str(i))(
                x, mask, deterministic
            )
        return x


class _Encoder(_Module):
    remat: bool = False

    @nn.compact
    def __call__(self, x, mask, deterministic: bool):
        return _LayerStack(
            config=self.config, dtype=self.dtype, param_dtype=self.param_dtype, remat=self.remat, name='layer'
        )(x, mask, deterministic)


class _Pooler(_Module):
    @nn.compact
    def __call__(self, x):
        return jnp.tanh(self._dense(self.config.hidden_size, 'dense')(x[:, 0]))


class Bert(_Module):
    """HF `BertModel` in Flax.

    Attributes:
      config: `transformers.BertConfig` (sizes, hidden_act, dropout rates, layer_norm_eps,
        initializer_range).
      dtype / param_dtype: compute and parameter dtypes; outputs are float32.
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
        kw = dict(config=self.config, dtype=self.dtype, param_dtype=self.param_dtype)
        x = _Embeddings(**kw, name='embeddings')(input_ids, token_type_ids, deterministic)
        x = _Encoder(**kw, remat=self.remat, name='encoder')(x, mask, deterministic)
        if not self.add_pooling_layer:
            return x.astype(jnp.float32)
        pooled = _Pooler(**kw, name='pooler')(x)
        return x.astype(jnp.float32), pooled.astype(jnp.float32)


# ----------------------------------------------------------------------------
# PyTorch checkpoint conversion.

_TORCH_LEAF = {'kernel': 'weight', 'scale': 'weight', 'embedding': 'weight', 'bias': 'bias'}


def torch_key(path: Sequence[str]) -> str:
    """PyTorch `BertModel` key of a Flax param path (relative to 'params').

    E.g. ('encoder', 'layer', '0', 'attention', 'self', 'query', 'kernel') ->
    'encoder.layer.0.attention.self.query.weight'.
    """
    *modules, leaf = path
    if leaf not in _TORCH_LEAF:
        raise ValueError(f'No PyTorch key for {"/".join(path)}')
    return '.'.join([*modules, _TORCH_LEAF[leaf]])


def torch_to_flax(path: Sequence[str], array: np.ndarray) -> np.ndarray:
    """Converts the torch tensor of `path`: Linear weight [out, in] -> kernel [in, out].

    The transpose is its own inverse, so this also maps Flax -> torch.
    """
    return np.transpose(array) if path[-1] == 'kernel' else np.asarray(array)
