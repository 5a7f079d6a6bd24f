"""Circuit faithfulness, as hannamw/EAP-IG's ``evaluate_graph``: the pairs run with all outside a circuit patched.

Per example two effects (probes.metrics: 0 on the clean run, larger = more damage): that of the
circuit run and that of the empty circuit's run. Over a pair set the faithfulness is
``1 - sum(circuit effects) / sum(empty effects)``: 1 for the circuit of everything (nothing is
patched: the clean run), 0 for the empty circuit.

Node level (a circuit of heads, ``circuit.upstream == []``): each head outside the circuit outputs
its output on the corrupted prompt (its slice of the input of ``self_attn.o_proj``, as in
probes.patching); embeddings and MLPs run on the clean prompt. The empty run patches every head.

Edge level (a circuit of probes.edges' graph): each downstream input v reads the residual stream in
which every upstream node u with (u, v) outside the circuit contributes its write in the corrupted
run instead of its write in the circuit run. The residual stream is the sum of the writes (constant
biases cancel), so with w'_u - w_u the corrupted-minus-circuit write difference, v reads

    x_circuit + sum over missing (u, v) of (w'_u - w_u)  =  x_corrupted - sum over kept (u, v) of (w'_u - w_u).

Each read takes the shorter sum: a sparse circuit costs its kept edges, a dense one its missing
edges, and a read with nothing to add is the circuit run's or the corrupted run's own, so the full
circuit is the clean run and the empty circuit the corrupted run without any rounding. A q/k/v read
is one head's (key-value head's) slice of the projection of ``input_layernorm`` at the shifted
residual, computed as the projection's output plus that slice's linear map applied to the change of
the normalised input (bias and LoRA need no special case); an MLP or the logits read the shifted
input of ``post_attention_layernorm`` or of the final norm. That is Llama's block; other families follow
their row of the architecture table (probes.architectures), as probes.edges does: multipliers scale the
writes, fused projections are edited slice by slice, a parallel block's MLP reads the attention norm of
its shifted residual, and behind an attention output norm a layer's heads add, for each read, the change
of the normed attention output of the copy the read starts from.

Cost: one no-grad forward pass over stacked copies of the batch (probes.forward.repeat_rows), rows
[clean, corrupted, circuit, empty] at node level and [clean, corrupted, circuit] at edge level (the
empty edge circuit is the corrupted run). Hooks at each layer patch the circuit (and empty) rows
from the corrupted rows of the same pass, computed just before them in that layer; the clean rows
give the logits the metric compares against. Edge level keeps the write differences only of the
upstream nodes some read needs ([B, T, D] for the input and an MLP, [B, T, H, d_head] for a layer's
heads) and builds the shifted residuals of at most one key-value group's worth of reads at a time.
The q/k/v/o maps it reads outside the forward are gathered up front as probes.edges does; the norms
run inside their own layer's hooks, while the forward has that layer's parameters gathered.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from functools import partial

import torch
from torch import Tensor, nn

from sparks.probes.circuit import Circuit
from sparks.probes.edges import EdgeGraph, graph_of_sites, linear_map, mlp_read_site, mlp_write_site, sequences
from sparks.probes.forward import copies_logits, copies_metric
from sparks.probes.gather import full_parameters
from sparks.probes.hooks import Hooks, scoring
from sparks.probes.metrics import Metric, get_metric
from sparks.probes.pairs import Pair, PairBatch, batches
from sparks.probes.sites import LayerSites, Sites, resolve


def circuit_effects(model: nn.Module, batch: PairBatch, circuit: Circuit, metric: str | Metric = "kl") -> Tensor:
    """Per example [B, 2]: the effect of the circuit run and of the empty circuit's run.

    A circuit of select_edges (graph names in ``circuit.upstream``) is evaluated at edge level, one
    of head_circuit at node level (see the module docstring). ``batch`` lives on the model's
    device, and so does the result. The model is left exactly as found.
    """
    sites = resolve(model)
    metric = get_metric(metric)
    with scoring(sites.model, grad=False):
        if circuit.upstream:
            return _edge_effects(sites, batch, circuit, metric)
        return _head_effects(sites, batch, circuit.heads, metric)


def faithfulness(circuit_effect_sum: float, empty_effect_sum: float) -> float:
    """``1 - circuit / empty`` over a pair set: the share of the empty circuit's damage the circuit
    undoes; NaN unless the empty circuit does damage (sum > 0)."""
    if not empty_effect_sum > 0:
        return math.nan
    return float(1.0 - circuit_effect_sum / empty_effect_sum)


def replicate_faithfulness(circuit_effect_sums: Tensor, empty_effect_sums: Tensor) -> Tensor:
    """[B] ``faithfulness`` of each bootstrap replicate's effect sums [B] each, in float64 (NaN where the
    empty circuit does no damage)."""
    return torch.where(empty_effect_sums > 0, 1.0 - circuit_effect_sums / empty_effect_sums, math.nan).double()


def faithfulness_interval(circuit_effect_sums: Tensor, empty_effect_sums: Tensor) -> tuple[float, float]:
    """The 2.5% and 97.5% points of the faithfulness over bootstrap replicates' effect sums [B] each
    (replicates without an empty-circuit effect left out; NaN when none has one)."""
    values = replicate_faithfulness(circuit_effect_sums, empty_effect_sums)
    low, high = torch.nanquantile(values, values.new_tensor((0.025, 0.975))).tolist()
    return low, high


def pair_effects(
    model: nn.Module,
    pairs: Sequence[Pair],
    circuit: Circuit,
    *,
    metric: str | Metric = "kl",
    batch_size: int = 16,
    pad_id: int = 0,
) -> Tensor:
    """circuit_effects of every pair [N, 2], run batch by batch on the model's device, returned on the CPU."""
    device = next(model.parameters()).device
    parts = [
        circuit_effects(model, batch.to(device), circuit, metric).cpu() for batch in batches(pairs, pad_id, batch_size)
    ]
    return torch.cat(parts)


def _wide(x: Tensor) -> Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _copies_effects(sites: Sites, batch: PairBatch, metric: Metric, copies: Sequence[Tensor]) -> Tensor:
    """Effect [n, B] of each of the n stacked copies of one run (input ids per copy), against copy 0."""
    n = len(copies)
    logits = copies_logits(sites, batch, n, input_ids=torch.cat(list(copies)))
    return copies_metric(batch, metric, logits, logits[: batch.batch_size], n).view(n, batch.batch_size)


def _head_effects(sites: Sites, batch: PairBatch, heads: Sequence[tuple[int, int]], metric: Metric) -> Tensor:
    """Node level: copies [clean, corrupted, circuit, empty]; heads off the circuit output their corrupted z."""
    num_heads = sites.num_heads
    runs = torch.zeros(sites.num_layers, 4, 1, 1, num_heads, 1, dtype=torch.bool, device=batch.clean_ids.device)
    runs[:, :2] = True  # the clean and the corrupted copy run unpatched
    for layer, head in heads:
        sites.check_head(layer, head)
        runs[layer, 2, 0, 0, head, 0] = True

    def patch(layer: int) -> Callable[[Tensor], Tensor]:
        def edit(x: Tensor) -> Tensor:
            z = x.unflatten(0, (4, -1)).unflatten(-1, (num_heads, -1))
            return torch.where(runs[layer], z, z[1]).flatten(-2).flatten(0, 1)

        return edit

    clean, corrupted = batch.clean_ids, batch.corrupted_ids
    with Hooks() as hooks:
        for layer, layer_sites in enumerate(sites.layers):
            hooks.edit_input(layer_sites.o_proj, patch(layer))
        effects = _copies_effects(sites, batch, metric, [clean, corrupted, clean, clean])
    return torch.stack([effects[2], effects[3]], dim=1)


def edge_coefficients(graph: EdgeGraph, circuit: Circuit) -> tuple[Tensor, Tensor]:
    """How each read of an edge circuit's run is shifted (see the module docstring).

    Returns [U, D] coefficients of the write differences (corrupted minus circuit run) each
    downstream input adds to its base residual, and [D] whether that base is the corrupted run's:
    an input with fewer kept than missing edges starts from the corrupted residual and takes back
    its kept edges (-1), any other starts from the circuit run's and adds its missing edges (+1).
    Both are bookkeeping on the CPU, from names.
    """
    if tuple(circuit.upstream) != graph.upstream or tuple(circuit.downstream) != graph.downstream:
        raise ValueError("the circuit's node names are not those of this model's edge graph")
    upstream = {name: index for index, name in enumerate(graph.upstream)}
    downstream = {name: index for index, name in enumerate(graph.downstream)}
    kept = torch.zeros_like(graph.valid)
    for source, destination in circuit.edges:
        kept[upstream[source], downstream[destination]] = True
    if (kept & ~graph.valid).any():
        raise ValueError("the circuit has an edge into a read that comes before the write")
    missing = graph.valid & ~kept
    from_corrupted = kept.sum(0) < missing.sum(0)
    coefficients = torch.where(from_corrupted, -kept.double(), missing.double())
    return coefficients, from_corrupted


def _head_reads(graph: EdgeGraph, layer: int) -> list[tuple[str, int, int]]:
    """(projection, first column, count) of a layer's q, k and v reads."""
    return [
        ("q", graph.downstream.index(f"a{layer}.h0<q>"), graph.num_heads),
        ("k", graph.downstream.index(f"a{layer}.g0<k>"), graph.num_kv_heads),
        ("v", graph.downstream.index(f"a{layer}.g0<v>"), graph.num_kv_heads),
    ]


def _projection_maps(
    sites: Sites, graph: EdgeGraph, needed: list[bool], shifted: list[bool]
) -> list[dict[str, Tensor]]:
    """Per layer the linear maps the edge run reads outside the forward, gathered as probes.edges does:
    ``o`` where a head's write difference is added somewhere, ``q``/``k``/``v`` (their rows of a fused
    projection) where a read is shifted."""
    maps: list[dict[str, Tensor]] = []
    for layer, ls in enumerate(sites.layers):
        wanted: dict[str, tuple[nn.Module, slice]] = {}
        first = graph.head_index(layer, 0)
        if any(needed[first : first + graph.num_heads]):
            wanted["o"] = (ls.o_proj, slice(None))
        for kind, column, count in _head_reads(graph, layer):
            if any(shifted[column : column + count]):
                read = ls.read(kind)
                wanted[kind] = (read.proj, read.rows)
        maps.append({})
        if wanted:
            modules = dict.fromkeys(module for module, _ in wanted.values())  # a fused one once, in order
            with full_parameters(sites.model, *modules) as keep:
                maps[-1] = {kind: keep(linear_map(module)[rows]) for kind, (module, rows) in wanted.items()}
    return maps


def _edge_effects(sites: Sites, batch: PairBatch, circuit: Circuit, metric: Metric) -> Tensor:
    """Edge level: copies [clean, corrupted, circuit]; the circuit copy's reads shifted as the circuit says.

    The writes follow the family's row (probes.architectures): multipliers scale them; behind an attention
    output norm a layer's heads add, for each read, the change of the normed attention output of the copy
    the read starts from when the heads the read misses (or keeps) take their other copy's output.
    """
    sites.check_level("edge")
    run = _EdgeCircuitRun(sites, batch, circuit)
    with Hooks() as hooks:
        run.install(hooks)
        effects = _copies_effects(sites, batch, metric, [batch.clean_ids, batch.corrupted_ids, batch.clean_ids])
    return torch.stack([effects[2], effects[1]], dim=1)


_Kinds = list[tuple[str, int, int, slice]]
"""A projection's reads as (kind, first read, count, its rows of the projection's output)."""


class _EdgeCircuitRun:
    """One edge circuit's run: the plan of its reads, fixed from the circuit's names before the forward, and
    the write differences and layer inputs its hooks record and use as the forward goes layer by layer.

    The plan (edge_coefficients): which write differences each read adds and with which sign, which reads
    are shifted, the copy each read starts from, and the maps the reads and writes need. The state: the
    needed upstream nodes' write differences (corrupted minus circuit copy), the inputs of attention output
    norms, and the current layer's residual and attention norm output.

    Shapes in the comments: the forward's rows are the copies [clean, corrupted, circuit] of the batch (3B);
    B examples, T positions, D the model width, U upstream nodes, V downstream inputs (reads), C reads
    shifted together, H heads, d the head width, P a projection's output width.
    """

    def __init__(self, sites: Sites, batch: PairBatch, circuit: Circuit) -> None:
        self.sites = sites
        self.graph = graph_of_sites(sites)
        self.batch_size = batch.batch_size
        self.length = batch.clean_ids.shape[1]
        self.coefficients, from_corrupted = edge_coefficients(self.graph, circuit)  # (U, V) float64 on the CPU
        self.weights = self.coefficients.to(batch.clean_ids.device)  # (U, V) the same on the batch's device
        self.needed = self.coefficients.ne(0).any(1).tolist()  # (U) nodes whose write difference some read adds
        self.shifted = self.coefficients.ne(0).any(0).tolist()  # (V) reads that add write differences
        self.starts = [1 if corrupted else 2 for corrupted in from_corrupted.tolist()]  # (V) the copy each read starts from
        self.touched = [shift or start == 1 for shift, start in zip(self.shifted, self.starts)]  # (V) reads not the copy's own
        self.maps = _projection_maps(sites, self.graph, self.needed, self.shifted)
        self.changes = (batch.changed & batch.attention_mask.bool())[:, :, None]  # (B, T, 1) where a write can differ at all
        self.node_writes: dict[int, Tensor] = {}  # by upstream index, the input's and MLPs' write differences (B, T, D)
        self.head_writes: dict[int, Tensor] = {}  # by layer, its heads' output differences (B, T, H * d)
        self.attention: dict[int, Tensor] = {}  # by layer with an attention output norm, that norm's input (3B, T, D)
        self.residual: Tensor | None = None  # (3B, T, D) the current layer's residual, as its attention norm reads it
        self.normed: Tensor | None = None  # (3B, T, D) the current layer's attention norm output

    def install(self, hooks: Hooks) -> None:
        """Register the hooks of every layer, in forward order, and of the logits' read."""
        if self.needed[0]:
            hooks.read_output(self.sites.embed_tokens, partial(self._record, self.node_writes, 0, self.sites.embedding_multiplier))
        for layer, ls in enumerate(self.sites.layers):
            self._install_layer(hooks, layer, ls)
        if self.touched[-1]:
            hooks.edit_input(self.sites.norm, partial(self._edit_reader_input, len(self.graph.downstream) - 1, None, None))

    def _install_layer(self, hooks: Hooks, layer: int, ls: LayerSites) -> None:
        """A layer's hooks: record its input where a read of it is shifted, edit the touched q/k/v reads,
        record its heads' and MLP's write differences where needed, and edit its MLP's read if touched."""
        sites, graph = self.sites, self.graph
        reads = _head_reads(graph, layer)
        mlp_read = graph.downstream.index(f"m{layer}")
        parallel_read = sites.architecture.parallel and self.shifted[mlp_read]
        if parallel_read or any(any(self.shifted[first : first + count]) for _, first, count in reads):
            if ls.attention_norm is None:
                hooks.edit_input(ls.read("q").proj, self._remember_residual)
                hooks.edit_input(ls.read("q").proj, self._remember_normed)
            else:
                hooks.edit_input(ls.attention_norm, self._remember_residual)
                hooks.read_output(ls.attention_norm, self._remember_normed)
        by_projection: dict[nn.Module, _Kinds] = {}
        for kind, first, count in reads:
            if any(self.touched[first : first + count]):
                read = ls.read(kind)
                by_projection.setdefault(read.proj, []).append((kind, first, count, read.rows))
        for projection, kinds in by_projection.items():
            hooks.edit_output(projection, partial(self._edit_projection, layer, kinds))
        first = graph.head_index(layer, 0)
        if any(self.needed[first : first + sites.num_heads]):
            hooks.edit_input(ls.o_proj, partial(self._record, self.head_writes, layer, 1.0))
            if ls.attention_out_norm is not None:
                hooks.edit_input(ls.attention_out_norm, partial(self._remember_attention, layer))
        if self.touched[mlp_read]:
            norm = ls.attention_norm if sites.architecture.parallel else None
            hooks.edit_input(mlp_read_site(sites, ls), partial(self._edit_reader_input, mlp_read, layer, norm))
        if self.needed[graph.mlp_index(layer)]:
            hooks.read_output(mlp_write_site(ls), partial(self._record, self.node_writes, graph.mlp_index(layer), sites.residual_multiplier))

    def _record(self, store: dict[int, Tensor], key: int, scale: float, x: Tensor) -> Tensor:
        """Hook: store the write difference of a tensor (3B, T, D') passing by, and pass it on unchanged."""
        store[key] = self._difference(x, scale)
        return x

    def _remember_residual(self, x: Tensor) -> Tensor:
        """Hook: keep the current layer's residual (3B, T, D) and pass it on."""
        self.residual = x
        return x

    def _remember_normed(self, x: Tensor) -> Tensor:
        """Hook: keep the current layer's attention norm output (3B, T, D) and pass it on."""
        self.normed = x
        return x

    def _remember_attention(self, layer: int, x: Tensor) -> Tensor:
        """Hook: keep a layer's attention output norm input (3B, T, D) and pass it on."""
        self.attention[layer] = x
        return x

    def _copies(self, x: Tensor) -> Tensor:
        """Rows (3B, ...) as the copies (3, B, ...)."""
        return x.unflatten(0, (3, self.batch_size))

    def _layer_input(self) -> tuple[Tensor, Tensor]:
        """The current layer's residual and attention norm output as copies (3, B, T, D) each."""
        assert self.residual is not None and self.normed is not None, "the layer's hooks record both before its reads"
        return self._copies(self.residual), self._copies(self.normed)

    def _difference(self, x: Tensor, scale: float) -> Tensor:
        """Corrupted minus circuit copy of a write (3B, T, D') (or (3B * T, D')): (B, T, D'), zero where it cannot differ."""
        copies = self._copies(sequences(x, self.length))  # (3, B, T, D')
        return (_wide(copies[1]) - _wide(copies[2])) * self.changes * scale

    def _shift(self, reads: list[int], current: int | None) -> Tensor:
        """Sum over upstream u of coefficient[u, v] times u's write difference, per read v: (C, B, T, D).

        ``current`` is the layer whose forward is running (None after the last): its weights are whole."""
        total: Tensor | None = None
        for node, write in self.node_writes.items():
            if self.coefficients[node, reads].any():
                term = self.weights[node, reads].to(write.dtype)[:, None, None, None] * write  # (C, B, T, D)
                total = term if total is None else total + term
        for layer, z in self.head_writes.items():
            first = self.graph.head_index(layer, 0)
            heads = self.coefficients[first : first + self.sites.num_heads, reads].any(1).nonzero().squeeze(1).tolist()
            if not heads:
                continue
            change = self._head_shift(layer, z, heads, reads, current)  # (C, B, T, D)
            total = change if total is None else total + change
        assert total is not None, "shift is called for shifted reads only, which some write difference reaches"
        return total

    def _head_shift(self, layer: int, z: Tensor, heads: list[int], reads: list[int], current: int | None) -> Tensor:
        """What a layer's ``heads`` (those some of ``reads`` shift) add to each read (C, B, T, D), times the
        multiplier: their weighted output differences z (B, T, H * d) through W_o, and behind an attention output
        norm the change of the normed attention output of the copy each read starts from."""
        num_heads, head_dim = self.sites.num_heads, self.sites.head_dim
        first = self.graph.head_index(layer, 0)
        z = z.unflatten(-1, (num_heads, head_dim))  # (B, T, H, d)
        coefficient = self.weights[first : first + num_heads][heads][:, reads].to(z.dtype)  # (h, C)
        w_o = self.maps[layer]["o"].view(-1, num_heads, head_dim)[:, heads].to(z.dtype)  # (D, h, d)
        change = torch.einsum("bthk,hc,dhk->cbtd", z[:, :, heads], coefficient, w_o)  # (C, B, T, D)
        norm = self.sites.layers[layer].attention_out_norm
        if norm is not None:  # an earlier layer's norm is gathered: its forward released its sharded weights
            own = self._copies(self.attention[layer])[[self.starts[read] for read in reads]]  # (C, B, T, D)
            with full_parameters(self.sites.model, norm) if layer != current else nullcontext():
                change = _wide(norm.forward((_wide(own) + change).to(own.dtype))) - _wide(norm.forward(own))  # (C, B, T, D)
        return change * self.sites.residual_multiplier

    def _edit_projection(self, layer: int, kinds: _Kinds, output: Tensor) -> Tensor:
        """Hook: edit a projection's output (3B, T, P) (q, k, v or a fused one) so that the circuit copy's head
        slices become their reads, one key-value group's worth of reads at a time."""
        output = self._copies(output).clone()  # (3, B, T, P)
        group = self.sites.num_heads // self.sites.num_kv_heads
        for kind, first, count, rows in kinds:
            out = output[..., rows].unflatten(-1, (count, self.sites.head_dim))  # (3, B, T, H or G, d)
            for low in range(0, count, group):
                self._read_group(layer, kind, first, count, range(low, min(low + group, count)), out)
            output[..., rows] = out.flatten(-2)
        return output.flatten(0, 1)  # (3B, T, P)

    def _read_group(self, layer: int, kind: str, first: int, count: int, heads: range, out: Tensor) -> None:
        """Set the circuit copy of ``heads`` (one group) of a layer's ``kind`` reads in out (3, B, T, H or G, d).

        A touched read without a shift is the corrupted copy's. A shifted one is its starting copy's
        projection plus that head's rows of the projection applied to the change of the normalised input
        when the write differences are added to the residual.
        """
        copied = [head for head in heads if self.touched[first + head] and not self.shifted[first + head]]
        if copied:
            out[2, :, :, copied] = out[1, :, :, copied]
        patched = [head for head in heads if self.shifted[first + head]]
        if not patched:
            return
        reads = [first + head for head in patched]
        rows_of = [self.starts[read] for read in reads]
        norm = self.sites.layers[layer].attention_norm
        x, normed = self._layer_input()  # (3, B, T, D) each
        residual = (_wide(x[rows_of]) + self._shift(reads, layer)).to(x.dtype)  # (C, B, T, D)
        change = _wide(residual if norm is None else norm.forward(residual)) - _wide(normed[rows_of])  # (C, B, T, D)
        weight = self.maps[layer][kind].view(count, self.sites.head_dim, -1)[patched].to(change.dtype)  # (C, d, D)
        value = _wide(out[rows_of, :, :, patched]) + torch.einsum("cbtd,ckd->cbtk", change, weight)  # (C, B, T, d)
        out[2, :, :, patched] = value.permute(1, 2, 0, 3).to(out.dtype)  # (B, T, C, d)

    def _edit_reader_input(self, read: int, layer: int | None, norm: nn.Module | None, x: Tensor) -> Tensor:
        """Hook: edit a reader's input (3B, T, D) (layer's MLP's, or with None the logits'): the circuit copy's
        becomes its read. With ``norm`` (a parallel block's MLP) the input is that norm of the shifted residual."""
        copies = self._copies(x).clone()  # (3, B, T, D)
        copies[2] = copies[self.starts[read]]
        if self.shifted[read]:
            if norm is None:
                copies[2] = (_wide(copies[2]) + self._shift([read], layer)[0]).to(x.dtype)
            else:
                residual = self._layer_input()[0][self.starts[read]]  # (B, T, D)
                copies[2] = norm.forward((_wide(residual) + self._shift([read], layer)[0]).to(x.dtype))
        return copies.flatten(0, 1)  # (3B, T, D)
