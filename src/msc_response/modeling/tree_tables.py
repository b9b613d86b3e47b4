"""LightGBM's TreeSHAP contributions of shallow trees, looked up instead of recomputed.

Path-dependent TreeSHAP (what ``booster.predict(pred_contrib=True)`` computes) walks
every node of a tree and, at each internal node, asks only which child the input's
value goes to (LightGBM's ``Tree::TreeSHAP`` calls ``Decision`` and nothing else on
the input). So a tree's contribution vector is a function of the bits "goes left" at
its internal nodes. A tree of the product's default shape (``max_depth`` 2: three
internal nodes) has at most 8 such bit patterns. For each tree we find every pattern
an input can produce, give LightGBM one representative input per pattern
(``start_iteration=t, num_iteration=1``: that tree alone), and keep its answers in a
table. Explaining a matrix is then, per tree, the pattern of each row (vectorised
comparisons with LightGBM's decision rule) and a table look-up added per feature.

The values are LightGBM's own; only the order of the additions differs (LightGBM adds
each leaf's share into the running row, we add each tree's total), so the result
equals ``pred_contrib`` to about 1e-15 in log-odds, not bit for bit. The expected value
column is LightGBM's own number, taken from one call.

The same patterns give each tree's output (its leaf's value, asked of LightGBM with
``raw_score``), so the probability without explanations is looked up too: LightGBM adds
the trees' outputs in tree order from 0.0, as :meth:`ContributionTables.probabilities`
does, so that one is equal to ``booster.predict`` bit for bit (tested).

Not covered (the caller falls back to ``pred_contrib``): categorical splits, linear
trees, more than one tree per iteration (multiclass), a tree with more than
:data:`MAX_NODES` internal nodes or :data:`MAX_PATTERNS` patterns, or deep trees whose
pattern maps would pass :data:`MAX_MAP_ENTRIES`. The tables follow the trees LightGBM
predicts with by default (``best_iteration`` when the booster has one: its model text,
its ``predict``).
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import threading
from dataclasses import dataclass

import numpy as np

#: LightGBM's ``kZeroThreshold`` (include/LightGBM/meta.h: ``1e-35f``, a float widened to
#: double): a value with ``|x| <= ZERO`` is read as 0.0 when a dense row enters the
#: predictor (c_api.cpp, ``RowPairFunctionFromDenseMatric``) and is "zero" to a
#: ``missing_type`` Zero node (``Tree::IsZero``).
ZERO = float(np.float32(1e-35))
#: Trees with more internal nodes than this are not tabulated (a pattern is a number of
#: that many bits; a tree of depth 4 has 15).
MAX_NODES = 16
#: A tree with more than this many possible patterns (2^nodes) keeps a table of the
#: patterns that occur and a map from each pattern to its row instead of a row per pattern
#: (one look-up more per tree); the maps of a model may hold at most MAX_MAP_ENTRIES.
DENSE_PATTERNS = 64
MAX_MAP_ENTRIES = 2**23  # int16: 16 MB
#: Input patterns a tree may have before it is not tabulated (the representatives LightGBM
#: is asked about).
MAX_PATTERNS = 4096
MISSING_TYPES = ("None", "Zero", "NaN")  # LightGBM's MissingType enum, in order


@dataclass(frozen=True)
class _Node:
    feature: int
    threshold: float
    missing: str  # None, Zero or NaN (LightGBM's missing_type)
    default_left: bool


@dataclass(frozen=True)
class _Tree:
    nodes: tuple[_Node, ...]  # internal nodes; node j is bit j of the pattern
    features: tuple[int, ...]  # the features the tree splits on, ascending
    table: np.ndarray  # (len(features), rows): contribution per pattern (NaN: no input has it)
    rows: np.ndarray | None  # the table's row of each pattern; None: the pattern is the row
    output: np.ndarray  # (rows,): the tree's output (its leaf's value) per pattern


class NotCovered(ValueError):
    """The model has a tree this module does not tabulate (the reason says which)."""


def _prepared(column: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A feature's raw values as LightGBM's decisions read them: the value compared with a
    threshold (``|x| <= ZERO`` and NaN as 0.0), where it is NaN, where it is NaN or zero."""
    nan = np.isnan(column)
    value = np.where(nan | (np.abs(column) <= ZERO), 0.0, column)
    return value, nan, nan | (value == 0.0)


def _left(node: _Node, value: np.ndarray, nan: np.ndarray, zero: np.ndarray) -> np.ndarray:
    """LightGBM's ``Tree::NumericalDecision``: NaN is 0.0 unless the node's missing_type is
    NaN; missing_type NaN sends NaN, Zero sends NaN and zero, the default way."""
    left = value <= node.threshold
    special = {"None": None, "NaN": nan, "Zero": zero}[node.missing]
    if special is None:
        return left
    return (left | special) if node.default_left else (left & ~special)


def goes_left(node: _Node, column: np.ndarray) -> np.ndarray:
    """True where a raw value of ``column`` goes to the left child of ``node``."""
    return _left(node, *_prepared(np.asarray(column, dtype=float)))


class _Columns:
    """The decisions of one matrix, prepared once per feature and computed once per node
    (trees often repeat a split)."""

    def __init__(self, matrix: np.ndarray):
        self.matrix = matrix
        self.prepared: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.bits: dict[_Node, np.ndarray] = {}

    def bit(self, node: _Node) -> np.ndarray:
        """``goes_left`` of ``node`` for every row, as 0/1."""
        if node not in self.bits:
            if node.feature not in self.prepared:
                self.prepared[node.feature] = _prepared(self.matrix[:, node.feature])
            self.bits[node] = _left(node, *self.prepared[node.feature]).astype(np.intp)
        return self.bits[node]


class ContributionTables:
    """Every tree's contribution per input pattern, from LightGBM; :meth:`contributions`
    gives what ``booster.predict(matrix, pred_contrib=True)`` gives (to ~1e-15)."""

    def __init__(self, trees: list[_Tree], n_features: int, expected_value: float):
        self.trees = trees
        self.n_features = n_features
        self.expected_value = expected_value

    @classmethod
    def build(cls, booster, model_text: str | None = None) -> ContributionTables:
        """Tabulate ``booster`` (a binary-objective LightGBM Booster; ``model_text`` its
        ``model_to_string()``, when already at hand); raises :class:`NotCovered` when a tree
        is outside what this module handles."""
        header, trees_text = _parse(model_text or booster.model_to_string())
        if header.get("num_tree_per_iteration", "1") != "1":
            raise NotCovered(f"{header['num_tree_per_iteration']!r} trees per iteration")
        n_features = int(header["max_feature_idx"]) + 1
        trees = [
            _tabulate(booster, t, _nodes(tree, t), n_features) for t, tree in enumerate(trees_text)
        ]
        mapped = sum(len(tree.rows) for tree in trees if tree.rows is not None)
        if mapped > MAX_MAP_ENTRIES:
            raise NotCovered(f"{mapped} pattern map entries (at most {MAX_MAP_ENTRIES})")
        zeros = np.zeros((1, n_features))
        expected = float(booster.predict(zeros, pred_contrib=True, num_threads=1)[0, -1])
        return cls(trees, n_features, expected)

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        """``(n, n_features + 1)``: each feature's contribution, then the expected value."""
        matrix = self._checked(matrix)
        n = len(matrix)
        total = np.zeros((self.n_features, n))  # one contiguous row per feature: fast adds
        for tree, row in self._rows(matrix):
            for f, table in zip(tree.features, tree.table, strict=True):
                total[f] += table[row]
        out = np.empty((n, self.n_features + 1))
        out[:, :-1] = total.T
        out[:, -1] = self.expected_value
        return out

    def probabilities(self, matrix: np.ndarray) -> np.ndarray:
        """What ``booster.predict(matrix)`` gives, bit for bit: LightGBM adds its trees'
        outputs in tree order from 0.0 (``GBDT::PredictRaw``), as here, and its binary
        objective's ``ConvertOutput`` is ``1 / (1 + exp(-raw))`` with the C library's
        ``exp``, which scipy's ``expit`` also calls (NumPy's own vectorised ``exp`` differs
        in the last bit now and then); tested for equality."""
        from scipy.special import expit

        matrix = self._checked(matrix)
        raw = np.zeros(len(matrix))
        for tree, row in self._rows(matrix):
            raw += tree.output[row]
        return expit(raw)

    def _checked(self, matrix) -> np.ndarray:
        matrix = np.asarray(matrix, dtype=float)
        if matrix.ndim != 2 or matrix.shape[1] != self.n_features:
            raise ValueError(
                f"matrix: expected {self.n_features} columns, got shape {matrix.shape!r}"
            )
        return matrix

    def _rows(self, matrix: np.ndarray):
        """Each tree, in order, with the table row of every row of ``matrix`` (its pattern:
        bit j set where the row goes left at internal node j)."""
        columns = _Columns(matrix)
        pattern = np.empty(len(matrix), dtype=np.intp)
        for tree in self.trees:
            if not tree.nodes:  # one leaf: the same output for every row
                pattern[:] = 0
                yield tree, pattern
                continue
            pattern[:] = columns.bit(tree.nodes[0])
            for j, node in enumerate(tree.nodes[1:], start=1):
                pattern += columns.bit(node) << j
            yield tree, (pattern if tree.rows is None else tree.rows[pattern])


def _parse(text: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """LightGBM's model text: the header's ``key=value`` lines, and each ``Tree=`` block's.
    The text, not ``dump_model``: the JSON dump writes an infinite threshold (a split of
    NaN from every number) as 1e300; the text keeps ``inf`` and 17 digits."""
    header: dict[str, str] = {}
    trees: list[dict[str, str]] = []
    for line in text.splitlines():
        if line.startswith("end of trees"):
            break
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "Tree":
            trees.append({})
        (trees[-1] if trees else header)[key] = value
    return header, trees


def _nodes(tree: dict[str, str], t: int) -> tuple[_Node, ...]:
    """The internal nodes of one tree, by index (LightGBM's ``decision_type`` bits: 1
    categorical, 2 default left, bits 2-3 the missing type)."""
    if tree.get("is_linear", "0") != "0":
        raise NotCovered(f"tree {t}: linear leaves")
    if int(tree["num_leaves"]) < 2:
        return ()
    features = [int(v) for v in tree["split_feature"].split()]
    thresholds = [float(v) for v in tree["threshold"].split()]
    decisions = [int(v) for v in tree["decision_type"].split()]
    nodes = []
    for feature, threshold, decision in zip(features, thresholds, decisions, strict=True):
        if decision & 1 or (decision >> 2) & 3 >= len(MISSING_TYPES):
            raise NotCovered(
                f"tree {t}: a categorical split or an unknown decision_type {decision!r}"
            )
        nodes.append(
            _Node(feature, threshold, MISSING_TYPES[(decision >> 2) & 3], bool(decision & 2))
        )
    return tuple(nodes)


def _candidates(thresholds) -> np.ndarray:
    """Values that between them reach every distinct outcome of a feature's nodes: every
    point where an outcome can change (the thresholds, the edges of LightGBM's zero band),
    its neighbours on both sides, the infinities, zero and NaN."""
    edges = [*thresholds, -ZERO, ZERO]
    values = [-np.inf, np.inf, 0.0, np.nan]
    for b in edges:
        values += [b, np.nextafter(b, -np.inf), np.nextafter(b, np.inf)]
    return np.array(values)


def _tabulate(booster, t: int, nodes: tuple[_Node, ...], n_features: int) -> _Tree:
    features = tuple(sorted({node.feature for node in nodes}))
    if len(nodes) > MAX_NODES:
        raise NotCovered(f"tree {t}: {len(nodes)} internal nodes (at most {MAX_NODES})")
    # per feature, one value for each distinct outcome of its nodes
    per_feature = []
    for f in features:
        own = [(j, node) for j, node in enumerate(nodes) if node.feature == f]
        values = _candidates([node.threshold for _, node in own])
        codes = sum(goes_left(node, values).astype(np.intp) << j for j, node in own)
        _, first = np.unique(codes, return_index=True)
        per_feature.append(values[np.sort(first)])
    n_patterns = int(np.prod([len(v) for v in per_feature])) if features else 1
    if n_patterns > MAX_PATTERNS:
        raise NotCovered(f"tree {t}: {n_patterns} input patterns (at most {MAX_PATTERNS})")
    dense = 2 ** len(nodes) <= DENSE_PATTERNS
    table = np.full((len(features), 2 ** len(nodes) if dense else n_patterns + 1), np.nan)
    rows = None if dense else np.full(2 ** len(nodes), n_patterns, dtype=np.int16)  # NaN row
    output = np.full(table.shape[1], np.nan)
    reps = np.zeros((n_patterns, n_features))  # other features: any value does
    for k, combo in enumerate(itertools.product(*per_feature)):
        reps[k, list(features)] = combo
    leaf = booster.predict(reps, raw_score=True, start_iteration=t, num_iteration=1, num_threads=1)
    if not nodes:
        output[0] = leaf[0]
    else:
        contrib = booster.predict(
            reps, pred_contrib=True, start_iteration=t, num_iteration=1, num_threads=1
        )
        codes = sum(goes_left(node, reps[:, node.feature]).astype(np.intp) << j
                    for j, node in enumerate(nodes))  # fmt: skip
        if rows is not None:
            rows[codes], codes = np.arange(n_patterns), np.arange(n_patterns)
        table[:, codes] = contrib[:, list(features)].T
        output[codes] = leaf
    return _Tree(nodes, features, table, rows, output)


_CACHE: collections.OrderedDict[str, ContributionTables | None] = collections.OrderedDict()
_CACHE_SIZE = 4
_LOCK = threading.Lock()


def tables_for(booster) -> ContributionTables | None:
    """The tables of ``booster``, built once per process and model (None: not covered,
    use ``pred_contrib``). Keyed by the model's text, so a worker that loads the same
    model file for every chunk tabulates it once."""
    text = booster.model_to_string()
    key = hashlib.sha256(text.encode()).hexdigest()
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    try:
        tables = ContributionTables.build(booster, text)
    except NotCovered:
        tables = None
    with _LOCK:
        _CACHE[key] = tables
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return tables
