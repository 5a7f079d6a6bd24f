"""Edge scores by EAP-IG (docs/method.md, "Edge scores") on the live model, without per-head residual copies.

Upstream nodes write into the residual stream: the input embedding, every head (its write is
``W_o[:, slice_h] z_h``) and every MLP. Downstream inputs read it: each head's q, each key-value
head's k and v, each MLP, and the logits. The score of u -> v is

    score(u -> v) = (z'_u - z_u) . mean_k dL/d(in_v)   (write difference, corrupted minus clean)

where dL/d(in_v) is the gradient with respect to the residual stream as v alone reads it. For
q/k/v it comes from the gradient on the projection output (after which Qwen3's q_norm/k_norm and
RoPE already sit), split per head, mapped back through that head's rows of the projection and the
vector-Jacobian product of ``input_layernorm`` at the residual value of that interpolation point.
For an MLP it is the gradient on a clone of the ``post_attention_layernorm`` input, for the logits
on a clone of the final norm's input. Since the residual stream is a sum, the scores of a node's
edges add up to its node score (write difference times the gradient on its own output): the
identity the tests check. Signs and metric follow probes.attribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sparks.probes.forward import recorded_run
from sparks.probes.gather import full_parameters, token_embeddings
from sparks.probes.hooks import scoring
from sparks.probes.ig import CHUNK_SIZES, IG_RULE, ig_points, integrate
from sparks.probes.metrics import Metric, get_metric
from sparks.probes.pairs import PairBatch
from sparks.probes.sites import Sites, resolve


@dataclass(frozen=True)
class EdgeGraph:
    """Names of upstream nodes and downstream inputs, in forward order, and which edges exist.

    Upstream: ``input``, ``a{l}.h{h}``, ``m{l}``. Downstream: ``a{l}.h{h}<q>``, ``a{l}.g{g}<k>``,
    ``a{l}.g{g}<v>`` (g a key-value head), ``m{l}``, ``logits``. ``feeds[j]`` lists the upstream
    indices of the node(s) downstream input j belongs to (all heads sharing a kv head; none for
    the logits).
    """

    num_layers: int
    num_heads: int
    num_kv_heads: int
    upstream: tuple[str, ...]
    downstream: tuple[str, ...]
    feeds: tuple[tuple[int, ...], ...]
    valid: Tensor

    @classmethod
    def build(cls, num_layers: int, num_heads: int, num_kv_heads: int) -> EdgeGraph:
        group = num_heads // num_kv_heads
        upstream, writes = ["input"], [-1]
        downstream, reads, feeds = [], [], []
        for layer in range(num_layers):
            heads = [len(upstream) + head for head in range(num_heads)]
            upstream += [f"a{layer}.h{head}" for head in range(num_heads)] + [f"m{layer}"]
            writes += [2 * layer] * num_heads + [2 * layer + 1]
            for head in range(num_heads):
                downstream.append(f"a{layer}.h{head}<q>")
                feeds.append((heads[head],))
            for kind in "kv":
                for kv in range(num_kv_heads):
                    downstream.append(f"a{layer}.g{kv}<{kind}>")
                    feeds.append(tuple(heads[kv * group : (kv + 1) * group]))
            downstream.append(f"m{layer}")
            feeds.append((len(upstream) - 1,))
            reads += [2 * layer] * (num_heads + 2 * num_kv_heads) + [2 * layer + 1]
        downstream.append("logits")
        feeds.append(())
        reads.append(2 * num_layers)
        valid = torch.tensor(writes, device="cpu")[:, None] < torch.tensor(reads, device="cpu")[None, :]
        return cls(num_layers, num_heads, num_kv_heads, tuple(upstream), tuple(downstream), tuple(feeds), valid)

    def head_index(self, layer: int, head: int) -> int:
        """Upstream index of head (layer, head)."""
        return 1 + layer * (self.num_heads + 1) + head

    def mlp_index(self, layer: int) -> int:
        """Upstream index of layer's MLP."""
        return 1 + layer * (self.num_heads + 1) + self.num_heads

    def per_head(self, values: Tensor) -> Tensor:
        """The head entries of upstream-indexed ``values`` [..., U] as [..., L, H]."""
        rows = [self.head_index(layer, 0) for layer in range(self.num_layers)]
        return torch.stack([values[..., row : row + self.num_heads] for row in rows], dim=-2)


@dataclass(frozen=True)
class EdgeScores:
    """Per-example edge scores [B, U, D] (zero where ``graph.valid`` is False) and node scores [B, U]."""

    graph: EdgeGraph
    edges: Tensor
    nodes: Tensor


def linear_map(module: nn.Module) -> Tensor:
    """The [out, in] matrix a linear site applies, LoRA included, found by probing it with the identity."""
    if type(module) is nn.Linear:
        return module.weight
    with torch.no_grad():
        weight = next(module.parameters())
        eye = torch.eye(module.in_features, dtype=weight.dtype, device=weight.device)
        return (module.forward(eye) - module.forward(torch.zeros_like(eye[:1]))).T


def write_taps(sites: Sites) -> dict[str, tuple]:
    """The taps whose clean-minus-corrupted difference gives the upstream writes: o_proj inputs, MLP outputs."""
    taps: dict[str, tuple] = {}
    for layer, ls in enumerate(sites.layers):
        taps |= {f"z{layer}": (ls.o_proj, "input"), f"mlp{layer}": (ls.mlp, "output")}
    return taps


def write_deltas(
    sites: Sites,
    batch: PairBatch,
    clean: dict[str, Tensor],
    corrupted: dict[str, Tensor],
    dtype: torch.dtype,
    first: int = 0,
) -> tuple[Tensor, list[Tensor]]:
    """Each upstream node's write difference, corrupted minus clean, as [B, U, T, D] in graph order.

    Also the head-output differences [B, T, H, d_head] per layer. Both are zero at padding and
    before each row's first changed token (PairBatch.changed), cover positions ``first`` on only,
    and are computed once per batch (the edge contraction reads them for every downstream layer).
    """
    num_heads, head_dim = sites.num_heads, sites.head_dim
    batch_size, length = batch.clean_ids.shape
    length -= first
    mask = (batch.changed & batch.attention_mask.bool())[:, first:, None].to(dtype)

    def delta(name: str) -> Tensor:
        return (corrupted[name][:, first:].to(dtype) - clean[name][:, first:].to(dtype)) * mask

    with torch.no_grad():
        corrupted_embeds, clean_embeds = token_embeddings(
            sites.model, sites.embed_tokens, batch.corrupted_ids[:, first:], batch.clean_ids[:, first:]
        )
        d_embed = corrupted_embeds.to(dtype) - clean_embeds.to(dtype)
        writes = d_embed.new_empty(batch_size, 1 + sites.num_layers * (num_heads + 1), length, d_embed.shape[-1])
        writes[:, 0] = d_embed * mask
        d_z = []
        for layer, ls in enumerate(sites.layers):
            d_z.append(delta(f"z{layer}").view(batch_size, length, num_heads, head_dim))
            start = 1 + layer * (num_heads + 1)
            with full_parameters(sites.model, ls.o_proj):
                w_o = linear_map(ls.o_proj).to(dtype).view(-1, num_heads, head_dim)
                writes[:, start : start + num_heads] = torch.einsum("bthk,dhk->bhtd", d_z[-1], w_o)
            writes[:, start + num_heads] = delta(f"mlp{layer}")
    return writes, d_z


def norm_vjp(norm: nn.Module, x: Tensor, cotangent: Tensor) -> Tensor:
    """Vector-Jacobian products [N, J, T, D] of ``norm`` at x [N, T, D] for J cotangents [N, J, T, D]."""
    x = x.unsqueeze(1).expand_as(cotangent).clone().requires_grad_()
    (grad,) = torch.autograd.grad(norm.forward(x), x, cotangent)
    return grad


def edge_scores(
    model: nn.Module,
    batch: PairBatch,
    metric: str | Metric = "kl",
    method: str = "eap-ig",
    steps: int = 5,
    chunk_size: int | None = CHUNK_SIZES["edge"],
    rule: str = IG_RULE,
) -> EdgeScores:
    """Edge and node scores of every example in ``batch``; the model is left exactly as found.

    ``rule`` places the ``steps`` points of ``eap-ig`` (probes.ig). ``chunk_size`` of them run per
    pass (``None``: all). The default (probes.ig.CHUNK_SIZES), one, keeps the peak memory near that
    of a training step; k points stacked hold k graphs at once (bench/probe_cost.py measures both).
    The norm's vector-Jacobian products, each with several temporaries the size of its cotangents,
    run on one key-value group's worth of q (or the k, or the v) inputs at a time; a layer's reads
    are then contracted with the writes in one matmul.
    Positions before the batch's first changed token carry no write difference and are left out
    of all of it (for style pairs that is the whole shared question).
    """
    sites = resolve(model)
    metric = get_metric(metric)
    points = ig_points(method, steps, rule)
    graph = EdgeGraph.build(sites.num_layers, sites.num_heads, sites.num_kv_heads)
    num_heads, num_kv, head_dim = sites.num_heads, sites.num_kv_heads, sites.head_dim
    block = num_heads // num_kv
    batch_size, length = batch.clean_ids.shape
    taps: dict[str, tuple] = {"final": (sites.norm, "input")}
    for layer, ls in enumerate(sites.layers):
        taps |= {
            f"x{layer}": (ls.input_layernorm, "input"),
            f"q{layer}": (ls.q_proj, "output"),
            f"k{layer}": (ls.k_proj, "output"),
            f"v{layer}": (ls.v_proj, "output"),
            f"z{layer}": (ls.o_proj, "input"),
            f"mlp_in{layer}": (ls.post_attention_layernorm, "input"),
            f"mlp{layer}": (ls.mlp, "output"),
        }
    wrt = ["inputs_embeds", "final"] + [
        f"{name}{layer}" for layer in range(sites.num_layers) for name in ("q", "k", "v", "z", "mlp_in", "mlp")
    ]
    with scoring(sites.model, grad=True):
        with torch.no_grad():
            maps = []
            for ls in sites.layers:
                projections = {name: getattr(ls, f"{name}_proj") for name in "qkv"}
                with full_parameters(sites.model, *projections.values()) as keep:
                    maps.append({name: keep(linear_map(module)) for name, module in projections.items()})
            _, corrupted = recorded_run(sites, batch, batch.corrupted_ids, write_taps(sites))
        dtype = torch.promote_types(corrupted["z0"].dtype, torch.float32)
        device = corrupted["z0"].device
        edges = torch.zeros(batch_size, len(graph.upstream), len(graph.downstream), dtype=dtype, device=device)
        nodes = torch.zeros(batch_size, len(graph.upstream), dtype=dtype, device=device)
        deltas: list[Tensor] = []
        per_layer = num_heads + 2 * num_kv + 1
        begin = batch.first_change  # positions before it carry no write difference
        length -= begin

        def start(clean: dict[str, Tensor]) -> None:
            deltas.extend(write_deltas(sites, batch, clean, corrupted, dtype, begin))
            corrupted.clear()

        def summed(grad: Tensor, n: int) -> Tensor:
            """Sum over the n stacked points: [n * B, ...] -> [B, ...]."""
            grad = grad.to(dtype).unflatten(0, (n, batch_size))
            return grad[0] if n == 1 else grad.sum(0)

        def read_by(grad: Tensor, columns: slice, sources: slice) -> None:
            """Add (write difference . grad [B, J, T, D]) to the edges from ``sources`` into ``columns``.

            One batched matmul over (T, D) with the writes left in place (einsum copies them).
            """
            writes = deltas[0]
            read = torch.bmm(grad.flatten(2), writes[:, sources].flatten(2).transpose(1, 2))
            edges[:, sources, columns] += read.transpose(1, 2)

        def reduce(values: dict[str, Tensor], grads: dict[str, Tensor], n: int) -> None:
            writes, d_z = deltas

            def take(name: str) -> Tensor:
                return grads.pop(name)[:, begin:]

            for layer, ls in enumerate(sites.layers):
                x = values.pop(f"x{layer}")[:, begin:]
                read = writes.new_empty(batch_size, per_layer, length, writes.shape[-1])
                column = 0
                with full_parameters(sites.model, ls.input_layernorm):
                    for name, count in (("q", num_heads), ("k", num_kv), ("v", num_kv)):
                        grad = take(f"{name}{layer}").unflatten(-1, (count, head_dim))
                        weight = maps[layer][name].view(count, head_dim, -1).to(grad.dtype)
                        for low in range(0, count, block):
                            part = slice(low, min(low + block, count))
                            cotangent = torch.einsum("ntgk,gkd->ngtd", grad[:, :, part], weight[part])
                            vjp = norm_vjp(ls.input_layernorm, x, cotangent)
                            read[:, column : column + cotangent.shape[1]] = summed(vjp, n)
                            column += cotangent.shape[1]
                read[:, column] = summed(take(f"mlp_in{layer}"), n)
                first, columns = graph.head_index(layer, 0), slice(layer * per_layer, (layer + 1) * per_layer)
                read_by(read, columns, slice(0, first))
                read_by(read[:, -1:], slice(columns.stop - 1, columns.stop), slice(first, first + num_heads))
                z_grad = summed(take(f"z{layer}"), n).unflatten(-1, (num_heads, head_dim))
                nodes[:, first : first + num_heads] += torch.einsum("bthk,bthk->bh", d_z[layer], z_grad)
                mlp = graph.mlp_index(layer)
                nodes[:, mlp] += torch.einsum("btd,btd->b", writes[:, mlp], summed(take(f"mlp{layer}"), n))
            read_by(summed(take("final"), n).unsqueeze(1), slice(-1, None), slice(None))
            nodes[:, 0] += torch.einsum("btd,btd->b", writes[:, 0], summed(take("inputs_embeds"), n))

        integrate(sites, batch, metric, points, chunk_size, taps, wrt, start, reduce)
    return EdgeScores(graph, edges / len(points), nodes / len(points))
