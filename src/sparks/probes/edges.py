"""Edge scores by EAP-IG (docs/method.md, "Edge scores") on the live model, without per-head residual copies.

Upstream nodes write into the residual stream: the input embedding, every head and every MLP. Downstream
inputs read it: each head's q, each key-value head's k and v, each MLP, and the logits. The score of u -> v is

    score(u -> v) = (z'_u - z_u) . mean_k dL/d(in_v)   (write difference, corrupted minus clean)

where dL/d(in_v) is the gradient with respect to the residual stream as v alone reads it. What a node
writes and how a reader reads follow the family's row of the architecture table (probes.architectures):

- a head writes ``W_o[:, slice_h] z_h`` times the residual multiplier; where the family normalises the
  attention output before the residual add, through that norm's Jacobian at the interpolation point's
  attention output (the norm couples a layer's heads, so this write differs from point to point);
- an MLP writes the difference of what its block adds (after its output norm, times the multiplier);
  the embedding its difference times the embedding multiplier;
- q/k/v read through the gradient on the projection output (after which q/k norms and RoPE already
  sit), split per head, mapped back through that head's rows of the projection (a fused one's slice)
  and the vector-Jacobian product of the attention norm at the residual value of that point (none
  where the family has no pre-norm); an MLP through the gradient on a clone of its norm's input (of
  its own input, mapped back through the attention norm, in a parallel block), the logits on a clone
  of the final norm's input.

Since the residual stream is a sum, the scores of a node's edges add up to its node score (write
difference times the gradient on its own output): the identity the tests check for every row of the
table. Signs and metric follow probes.attribution.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import torch
from torch import Tensor, nn

from sparks.probes.forward import recorded_run
from sparks.probes.gather import full_parameters, token_embeddings
from sparks.probes.hooks import scoring
from sparks.probes.ig import CHUNK_SIZES, IG_RULE, ig_points, integrate
from sparks.probes.metrics import Metric, get_metric
from sparks.probes.pairs import PairBatch
from sparks.probes.sites import LayerSites, Sites, resolve


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
    def build(cls, num_layers: int, num_heads: int, num_kv_heads: int, parallel: bool = False) -> EdgeGraph:
        """The graph of ``num_layers`` layers; in ``parallel`` blocks a layer's MLP reads where its heads do."""
        group = num_heads // num_kv_heads
        upstream, writes = ["input"], [-1]
        downstream: list[str] = []
        reads: list[int] = []
        feeds: list[tuple[int, ...]] = []
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
            reads += [2 * layer] * (num_heads + 2 * num_kv_heads) + [2 * layer + (0 if parallel else 1)]
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
        inputs = cast(int, module.in_features)  # a linear site (an nn.Linear a LoRA layer wraps) has an int in_features
        eye = torch.eye(inputs, dtype=weight.dtype, device=weight.device)
        return (module.forward(eye) - module.forward(torch.zeros_like(eye[:1]))).T


def graph_of_sites(sites: Sites) -> EdgeGraph:
    """The edge graph of a resolved model's head layout and block structure."""
    return EdgeGraph.build(sites.num_layers, sites.num_heads, sites.num_kv_heads, sites.architecture.parallel)


def mlp_write_site(ls: LayerSites) -> nn.Module:
    """The module whose output is what a layer's MLP block adds to the residual (before the multiplier)."""
    return ls.mlp if ls.mlp_out_norm is None else ls.mlp_out_norm


def mlp_read_site(sites: Sites, ls: LayerSites) -> nn.Module:
    """The module whose input, as an MLP reads it, is the residual (its own input in a parallel block:
    the attention norm's output, which the reader maps back through that norm)."""
    if sites.architecture.parallel or ls.mlp_norm is None:
        return ls.mlp
    return ls.mlp_norm


def projection_taps(layer: int, ls: LayerSites) -> dict[str, tuple]:
    """A layer's q/k/v projection outputs by tap name: ``q{l}``, ``k{l}``, ``v{l}``, or one ``qkv{l}`` if fused."""
    taps: dict[str, tuple] = {}
    for kind in "qkv":
        taps.setdefault(_projection_tap(layer, ls, kind), (ls.read(kind).proj, "output"))
    return taps


def _projection_tap(layer: int, ls: LayerSites, kind: str) -> str:
    return f"qkv{layer}" if ls.read("q").proj is ls.read("k").proj else f"{kind}{layer}"


def projection_output(outputs: dict[str, Tensor], layer: int, ls: LayerSites, kind: str) -> Tensor:
    """The ``kind`` (q, k or v) part of a layer's projection outputs as tapped by projection_taps."""
    return outputs[_projection_tap(layer, ls, kind)][..., ls.read(kind).rows]


def write_taps(sites: Sites) -> dict[str, tuple]:
    """The taps whose clean-minus-corrupted difference gives the upstream writes: o_proj inputs, what the
    MLP blocks add, and the attention outputs an attention output norm reads."""
    taps: dict[str, tuple] = {}
    for layer, ls in enumerate(sites.layers):
        taps |= {f"z{layer}": (ls.o_proj, "input"), f"mlp{layer}": (mlp_write_site(ls), "output")}
        if ls.attention_out_norm is not None:
            taps[f"o{layer}"] = (ls.attention_out_norm, "input")
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

    Also the head-output differences [B, T, H, d_head] per layer. A layer with an attention output norm
    holds its heads' differences before that norm and before the multiplier (``W_o[:, h] dz_h``), which
    edge_scores carries through the norm's Jacobian at each point and exact patching through the norm
    itself (exact_head_writes). Both are zero at padding and before each row's first changed token
    (PairBatch.changed), cover positions ``first`` on only, and are computed once per batch.
    """
    num_heads, head_dim = sites.num_heads, sites.head_dim
    batch_size, length = batch.clean_ids.shape
    length -= first
    mask = (batch.changed & batch.attention_mask.bool())[:, first:, None].to(dtype)

    def delta(name: str) -> Tensor:
        changed = sequences(corrupted[name], length + first).to(dtype) - sequences(clean[name], length + first).to(dtype)
        return changed[:, first:] * mask

    with torch.no_grad():
        corrupted_embeds, clean_embeds = token_embeddings(
            sites.model, sites.embed_tokens, batch.corrupted_ids[:, first:], batch.clean_ids[:, first:]
        )
        d_embed = corrupted_embeds.to(dtype) - clean_embeds.to(dtype)
        writes = d_embed.new_empty(batch_size, 1 + sites.num_layers * (num_heads + 1), length, d_embed.shape[-1])
        writes[:, 0] = d_embed * mask * sites.embedding_multiplier
        d_z = []
        for layer, ls in enumerate(sites.layers):
            d_z.append(delta(f"z{layer}").view(batch_size, length, num_heads, head_dim))
            start = 1 + layer * (num_heads + 1)
            scale = 1.0 if ls.attention_out_norm is not None else sites.residual_multiplier
            with full_parameters(sites.model, ls.o_proj):
                w_o = linear_map(ls.o_proj).to(dtype).view(-1, num_heads, head_dim)
                writes[:, start : start + num_heads] = torch.einsum("bthk,dhk->bhtd", d_z[-1], w_o) * scale
            writes[:, start + num_heads] = delta(f"mlp{layer}") * sites.residual_multiplier
    return writes, d_z


def sequences(x: Tensor, length: int) -> Tensor:
    """A tapped activation as [N, T, ...]: some MoE blocks (Llama 4's) return theirs flattened to [N * T, D]."""
    return x.reshape(-1, length, x.shape[-1])


def norm_vjp(norm: nn.Module, x: Tensor, cotangent: Tensor) -> Tensor:
    """Vector-Jacobian products [N, J, T, D] of ``norm`` at x [N, T, D] for J cotangents [N, J, T, D]."""
    x = x.unsqueeze(1).expand_as(cotangent).clone().requires_grad_()
    (grad,) = torch.autograd.grad(norm.forward(x), x, cotangent)
    return grad


def norm_jvp(norm: nn.Module, x: Tensor, tangent: Tensor) -> Tensor:
    """Jacobian-vector products [N, J, T, D] of ``norm`` at x [N, T, D] for J tangents [N, J, T, D], in the
    tangents' dtype (the norm itself runs in x's)."""
    own = x.dtype
    primal = x.unsqueeze(1).expand(tangent.shape).to(tangent.dtype).contiguous()
    product = torch.func.jvp(lambda value: norm.forward(value.to(own)), (primal,), (tangent,))[1]
    return product.detach().to(tangent.dtype)


def exact_head_writes(sites: Sites, writes: Tensor, clean: dict[str, Tensor], first: int = 0) -> Tensor:
    """``writes`` (write_deltas) with each attention-output-normed head write made exact: the change of
    the normed attention output when that head alone takes its corrupted output, times the multiplier.

    This is what patching one head's output changes in what the layer adds to the residual stream
    (probes.patching delivers it to one reader at a time); edge_scores' Jacobian is its linearisation.
    """
    num_heads = sites.num_heads
    for layer, ls in enumerate(sites.layers):
        norm = ls.attention_out_norm
        if norm is None:
            continue
        start = 1 + layer * (num_heads + 1)
        heads = slice(start, start + num_heads)
        with torch.no_grad(), full_parameters(sites.model, norm):
            attention = clean[f"o{layer}"][:, first:]
            before = norm.forward(attention).to(writes.dtype)
            after = norm.forward((attention.unsqueeze(1).to(writes.dtype) + writes[:, heads]).to(attention.dtype))
            writes[:, heads] = (after.to(writes.dtype) - before.unsqueeze(1)) * sites.residual_multiplier
    return writes


def edge_scores(
    model: nn.Module,
    batch: PairBatch,
    metric: str | Metric = "kl",
    method: str = "eap-ig",
    steps: int = 5,
    chunk_size: int | None = CHUNK_SIZES["edge"],
    ig_rule: str = IG_RULE,
) -> EdgeScores:
    """Edge and node scores of every example in ``batch``; the model is left exactly as found.

    ``ig_rule`` places the ``steps`` points of ``eap-ig`` (probes.ig). ``chunk_size`` of them run per
    pass (``None``: all). The default (probes.ig.CHUNK_SIZES), one, keeps the peak memory near that
    of a training step; k points stacked hold k graphs at once (bench/probe_cost.py measures both).
    The norm's vector-Jacobian products, each with several temporaries the size of its cotangents,
    run on one key-value group's worth of q (or the k, or the v) inputs at a time; a layer's reads
    are then contracted with the writes in one matmul. Where heads write through an attention output
    norm, writes and reads are contracted point by point (the write depends on the point); elsewhere
    the reads are summed over the points first.
    Positions before the batch's first changed token carry no write difference and are left out
    of all of it (for style pairs that is the whole shared question).
    """
    sites = resolve(model)
    sites.check_level("edge")
    metric = get_metric(metric)
    points = ig_points(method, steps, ig_rule)
    taps, wrt = _gradient_taps(sites)
    with scoring(sites.model, grad=True):
        run = _EdgeRun.prepare(sites, batch)
        integrate(sites, batch, metric, points, chunk_size, taps, wrt, run.start, run.reduce)
    return EdgeScores(run.graph, run.edges / len(points), run.nodes / len(points))


def _gradient_taps(sites: Sites) -> tuple[dict[str, tuple], list[str]]:
    """The taps edge_scores records on every point and the names of those whose gradients it reads.

    Recorded: the final norm's input, the write taps, and per layer the attention norm's input, the
    q/k/v projection outputs and the MLP's read site. Gradients: the input embeddings, the final norm's
    input, and per layer the projection outputs, o_proj's input and the MLP's read and write sites.
    """
    taps: dict[str, tuple] = {"final": (sites.norm, "input"), **write_taps(sites)}
    wrt = ["inputs_embeds", "final"]
    for layer, ls in enumerate(sites.layers):
        if ls.attention_norm is not None:
            taps[f"x{layer}"] = (ls.attention_norm, "input")
        taps |= projection_taps(layer, ls) | {f"mlp_in{layer}": (mlp_read_site(sites, ls), "input")}
        wrt += [*projection_taps(layer, ls), f"z{layer}", f"mlp_in{layer}", f"mlp{layer}"]
    return taps, wrt


def _read_maps(sites: Sites, ls: LayerSites) -> dict[str, Tensor]:
    """A layer's q, k and v maps by kind, (H * d, D) and (G * d, D) (a fused projection's rows for each),
    gathered once up front: the reads map the projection gradients back through them."""
    projections = {kind: ls.read(kind) for kind in "qkv"}
    modules = dict.fromkeys(read.proj for read in projections.values())  # a fused one once, in order
    with full_parameters(sites.model, *modules) as keep:
        return {kind: keep(linear_map(read.proj)[read.rows]).detach() for kind, read in projections.items()}


def _to_residual(norm: nn.Module | None, x: Tensor | None, cotangent: Tensor) -> Tensor:
    """Reads [N, J, T, D] of the attention norm's output mapped back to the residual x [N, T, D] it normalises
    (unchanged where the family has no attention norm)."""
    return cotangent if norm is None or x is None else norm_vjp(norm, x, cotangent)


@dataclass
class _EdgeRun:
    """The state edge_scores' stages share, and the stages: integrate calls ``start`` once with the clean
    run's taps, then ``reduce`` for each chunk of n interpolation points.

    Held: the model's sites and edge graph, the batch and its geometry, the q/k/v maps, the corrupted run's
    write taps (until ``start``), the write differences (from ``start`` on) and the edge and node sums.

    Shapes in the comments: B examples; R the rows a chunk's reads are contracted in (n * B point by point,
    else B); U upstream nodes, V downstream inputs, J a layer's downstream inputs (H + 2G + 1); T the
    positions from the first changed one on (T0 all of them); D the model width; H heads, G key-value
    heads, d the head width.
    """

    sites: Sites
    graph: EdgeGraph
    batch: PairBatch
    maps: list[dict[str, Tensor]]  # per layer, by kind: (H * d, D) for q, (G * d, D) for k and v
    corrupted: dict[str, Tensor]  # the corrupted run's write taps, let go once the write differences are in
    edges: Tensor  # (B, U, V) edge score sums over the points
    nodes: Tensor  # (B, U) node score sums over the points
    begin: int  # the first changed position: those before it carry no write difference
    length: int  # T
    per_point: bool  # some layer's heads write through an attention output norm
    writes: Tensor = field(init=False)  # (B, U, T, D) write differences, corrupted minus clean (write_deltas)
    d_z: list[Tensor] = field(init=False)  # per layer (B, T, H, d) head-output differences

    @classmethod
    def prepare(cls, sites: Sites, batch: PairBatch) -> _EdgeRun:
        """Gather the q/k/v maps, run the corrupted prompt and zero the sums (under scoring(grad=True))."""
        graph = graph_of_sites(sites)
        with torch.no_grad():
            maps = [_read_maps(sites, ls) for ls in sites.layers]
            _, corrupted = recorded_run(sites, batch, batch.corrupted_ids, write_taps(sites))
        dtype = torch.promote_types(corrupted["z0"].dtype, torch.float32)
        device = corrupted["z0"].device
        edges = torch.zeros(batch.batch_size, len(graph.upstream), len(graph.downstream), dtype=dtype, device=device)  # (B, U, V)
        nodes = torch.zeros(batch.batch_size, len(graph.upstream), dtype=dtype, device=device)  # (B, U)
        begin = batch.first_change
        per_point = any(ls.attention_out_norm is not None for ls in sites.layers)
        return cls(sites, graph, batch, maps, corrupted, edges, nodes, begin, batch.clean_ids.shape[1] - begin, per_point)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype everything is contracted and summed in: the model's, at least float32."""
        return self.edges.dtype

    @property
    def per_layer(self) -> int:
        """J: a layer's downstream inputs (H q, G k, G v, one MLP)."""
        return self.sites.num_heads + 2 * self.sites.num_kv_heads + 1

    def start(self, clean: dict[str, Tensor]) -> None:
        """Stage 1, once the clean run's taps are in: the write differences; the corrupted taps are let go."""
        self.writes, self.d_z = write_deltas(self.sites, self.batch, clean, self.corrupted, self.dtype, self.begin)
        self.corrupted.clear()

    def reduce(self, values: dict[str, Tensor], grads: dict[str, Tensor], n: int) -> None:
        """Stage 2, per chunk of n points: each layer's reads contracted into the edges and its nodes scored,
        then the logits' read and the input's node. Taps are popped from ``values`` and ``grads`` as used."""
        writes = self._point_writes(values, n)  # (R, U, T, D)
        for layer, ls in enumerate(self.sites.layers):
            read = self._layer_reads(layer, ls, values, grads, n, writes.shape[0])  # (R, J, T, D)
            self._add_layer_edges(layer, writes, read)
            self._add_layer_nodes(layer, grads)
        self._read_by(writes, self._combined(self._take(grads, "final"), n).unsqueeze(1), slice(-1, None), slice(None))
        embeds = self._per_example(self._take(grads, "inputs_embeds").to(self.dtype))  # (B, T, D)
        self.nodes[:, 0] += torch.einsum("btd,btd->b", self.writes[:, 0], embeds) / self.sites.embedding_multiplier

    def _point_writes(self, values: dict[str, Tensor], n: int) -> Tensor:
        """The writes (R, U, T, D) the reads of these n points are contracted with: the write differences,
        and where heads write through an attention output norm, their linearisation at each point's
        attention output (norm_jvp), times the multiplier."""
        if not self.per_point:
            return self.writes  # (B, U, T, D)
        writes = self.writes.repeat(n, 1, 1, 1)  # (n * B, U, T, D)
        for layer, ls in enumerate(self.sites.layers):
            if ls.attention_out_norm is None:
                continue
            attention = values.pop(f"o{layer}")  # (n * B, T0, D)
            first = self.graph.head_index(layer, 0)
            heads = slice(first, first + self.sites.num_heads)
            with full_parameters(self.sites.model, ls.attention_out_norm):
                normed = norm_jvp(ls.attention_out_norm, attention[:, self.begin :], writes[:, heads])  # (n * B, H, T, D)
            writes[:, heads] = normed * self.sites.residual_multiplier
        return writes

    def _layer_reads(
        self, layer: int, ls: LayerSites, values: dict[str, Tensor], grads: dict[str, Tensor], n: int, rows: int
    ) -> Tensor:
        """The gradients (R, J, T, D) on the residual stream as each of a layer's inputs alone reads it.

        A q/k/v read: the projection output's gradient, split per head (key-value head), mapped back through
        that head's rows of the projection and then the attention norm, one key-value group at a time. The
        MLP's: the gradient on its read site (in a parallel block mapped back through the attention norm).
        """
        sites, norm = self.sites, ls.attention_norm
        head_dim, block = sites.head_dim, sites.num_heads // sites.num_kv_heads
        x = values.pop(f"x{layer}")[:, self.begin :] if norm is not None else None  # (n * B, T, D)
        read = self.writes.new_empty(rows, self.per_layer, self.length, self.writes.shape[-1])  # (R, J, T, D)
        outputs = {name: self._take(grads, name) for name in projection_taps(layer, ls)}  # (n * B, T, rows of the tap)
        column = 0
        with full_parameters(sites.model, *([] if norm is None else [norm])):
            for kind, count in (("q", sites.num_heads), ("k", sites.num_kv_heads), ("v", sites.num_kv_heads)):
                grad = projection_output(outputs, layer, ls, kind).unflatten(-1, (count, head_dim))  # (n * B, T, H or G, d)
                weight = self.maps[layer][kind].view(count, head_dim, -1).to(grad.dtype)  # (H or G, d, D)
                for low in range(0, count, block):
                    part = slice(low, min(low + block, count))
                    cotangent = torch.einsum("ntgk,gkd->ngtd", grad[:, :, part], weight[part])  # (n * B, g, T, D)
                    read[:, column : column + cotangent.shape[1]] = self._combined(_to_residual(norm, x, cotangent), n)
                    column += cotangent.shape[1]
            mlp_grad = self._take(grads, f"mlp_in{layer}")  # (n * B, T, D)
            if sites.architecture.parallel:
                mlp_grad = _to_residual(norm, x, mlp_grad.unsqueeze(1)).squeeze(1)
            read[:, column] = self._combined(mlp_grad, n)
        return read

    def _add_layer_edges(self, layer: int, writes: Tensor, read: Tensor) -> None:
        """Contract a layer's reads (R, J, T, D) with the writes (R, U, T, D) of the nodes before the layer,
        and in a sequential block also its MLP's read with the layer's own heads."""
        num_heads, first = self.sites.num_heads, self.graph.head_index(layer, 0)
        columns = slice(layer * self.per_layer, (layer + 1) * self.per_layer)
        self._read_by(writes, read, columns, slice(0, first))
        if not self.sites.architecture.parallel:
            self._read_by(writes, read[:, -1:], slice(columns.stop - 1, columns.stop), slice(first, first + num_heads))

    def _add_layer_nodes(self, layer: int, grads: dict[str, Tensor]) -> None:
        """Add a layer's node scores: each head's output difference . the gradient on its slice of o_proj's
        input, and the MLP's write difference . the gradient on what its block adds."""
        num_heads, first, mlp = self.sites.num_heads, self.graph.head_index(layer, 0), self.graph.mlp_index(layer)
        z_grad = self._per_example(self._take(grads, f"z{layer}").to(self.dtype))  # (B, T, H * d)
        z_grad = z_grad.unflatten(-1, (num_heads, self.sites.head_dim))  # (B, T, H, d)
        self.nodes[:, first : first + num_heads] += torch.einsum("bthk,bthk->bh", self.d_z[layer], z_grad)
        mlp_out = self._per_example(self._take(grads, f"mlp{layer}").to(self.dtype))  # (B, T, D)
        self.nodes[:, mlp] += torch.einsum("btd,btd->b", self.writes[:, mlp], mlp_out) / self.sites.residual_multiplier

    def _read_by(self, writes: Tensor, grad: Tensor, columns: slice, sources: slice) -> None:
        """Add (write difference . grad (R, J, T, D)) to the edges from ``sources`` into ``columns``.

        One batched matmul over (T, D) with the writes left in place (einsum copies them).
        """
        read = torch.bmm(grad.flatten(2), writes[:, sources].flatten(2).transpose(1, 2))  # (R, J, sources)
        self.edges[:, sources, columns] += self._per_example(read).transpose(1, 2)

    def _take(self, grads: dict[str, Tensor], name: str) -> Tensor:
        """Pop a tap's gradient as (n * B, T, ...): positions from the first changed one on."""
        return sequences(grads.pop(name), self.length + self.begin)[:, self.begin :]

    def _combined(self, grad: Tensor, n: int) -> Tensor:
        """The n stacked points' rows (n * B, ...) as contracted, in self.dtype: kept point by point where
        writes depend on the point, else summed into (B, ...)."""
        grad = grad.to(self.dtype)
        if self.per_point or n == 1:
            return grad
        return grad.unflatten(0, (n, self.batch.batch_size)).sum(0)

    def _per_example(self, x: Tensor) -> Tensor:
        """Rows (n * B, ...) of stacked points summed into (B, ...) (nothing to sum for one point)."""
        batch_size = self.batch.batch_size
        return x if x.shape[0] == batch_size else x.unflatten(0, (-1, batch_size)).sum(0)
