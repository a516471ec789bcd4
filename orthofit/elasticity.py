"""Linear elasticity on quadratic tetrahedra, condensed onto a rigid cuff.

This module owns the numbers of the finite-element solve: the element
stiffness of straight-sided 10-node tetrahedra (four-point Gauss rule, exact
for them), its assembly as 3 × 3 blocks of node pairs, and the stiffness of
a rigid body tied to a set of nodes with another set clamped.  Everything
else about the model (which nodes, which axes) comes from the caller.
Units: mm, N, MPa; a rotational stiffness comes out in N·mm/rad.

The tied nodes follow the rigid body, ``u = U + Θ × (x - p)``, so the
unknowns are the free nodes' displacements and the body's six.  The free
ones are eliminated from that bordered matrix by a **multifrontal Cholesky
factorisation** (Duff & Reid 1983; Liu 1992): what is left after the last
elimination is the Schur complement on the body, its 6 × 6 stiffness at
``p``, exact to rounding.  No triangular factor is kept and nothing is
solved for afterwards; every load case on the cuff (a pure moment, a
rotation about an axis with a slide along the shank) is exact linear algebra
on that matrix.

The elimination order is METIS's nested dissection of the graph of the free
corner nodes (a sixth of the nodes of a shell's quadratic mesh), each
mid-node eliminated with whichever end of its edge goes first.  Its
elimination tree groups the unknowns into dense fronts, factorised by LAPACK
and updated by BLAS on one thread in a fixed order, so the same mesh gives
the same numbers bit for bit on every machine and under any thread count.
A part that can move unloaded (a mechanism) shows as a pivot of rounding
error, or a negative one, and is refused with :class:`SingularStiffnessError`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pymetis
from scipy import sparse
from scipy.linalg import blas, lapack
from threadpoolctl import threadpool_limits

from .femesh import TET_EDGES

__all__ = ["SingularStiffnessError", "SolverParams", "StiffnessBlocks", "isotropic_matrix",
           "stiffness_blocks", "assemble_stiffness", "rigid_body_stiffness", "move_reference",
           "EliminationTree", "elimination_tree"]

log = logging.getLogger(__name__)

# Four-point Gauss rule on the tetrahedron: exact for quadratics, and the
# integrand B^T D B of a straight-sided quadratic tetrahedron is quadratic.
_A, _B = 0.5854101966249685, 0.1381966011250105
_GAUSS = np.array([[_A, _B, _B, _B], [_B, _A, _B, _B], [_B, _B, _A, _B], [_B, _B, _B, _A]])
# Elements per assembly chunk: about 30 MB of temporaries each.
_CHUNK = 8192
_MECHANISM = ("a part of the wall can move with no load on it (a mechanism the "
              "finite-element model could not hold)")


class SingularStiffnessError(ArithmeticError):
    """The free part of a stiffness matrix is singular: something in it can move unloaded."""


@dataclass(frozen=True)
class SolverParams:
    """How the free unknowns are eliminated [eng]."""

    # A subtree of the elimination tree with at most this many unknowns is
    # eliminated as one dense front.  On the adult solid AFO (232,000 free
    # unknowns) 120 to 240 took the same time within noise, 360 a tenth
    # longer, and 480 did 1.8 times the arithmetic (on the zeros of dense
    # leaves); fewer than 120 means more fronts, each with its overhead.
    leaf_dofs: int = 240
    # A pivot under this share of the largest is a rounding error standing
    # for a zero: the free nodes hold a mechanism (1e-16 for a tetrahedron
    # hanging by an edge), where the sample devices and the test walls give
    # 3e-5 and more.
    pivot_floor: float = 1e-12


def isotropic_matrix(modulus_mpa: float, poisson: float) -> np.ndarray:
    """The 6 × 6 elasticity matrix (Voigt order xx, yy, zz, yz, xz, xy; engineering shear)."""
    lam, mu = _lame(modulus_mpa, poisson)
    d = np.zeros((6, 6))
    d[:3, :3] = lam
    d[np.arange(3), np.arange(3)] = lam + 2 * mu
    d[np.arange(3, 6), np.arange(3, 6)] = mu
    return d


def _lame(modulus_mpa: float, poisson: float) -> tuple[float, float]:
    e, nu = modulus_mpa, poisson
    return e * nu / ((1 + nu) * (1 - 2 * nu)), e / (2 * (1 + nu))


def _shape_gradient_weights() -> np.ndarray:
    """(4 Gauss points, 10 nodes, 4 corners): ∇N_a = Σ_i w[q, a, i] ∇L_i at each point.

    Corner: N = L(2L - 1), so ∇N = (4L - 1) ∇L; mid-node of edge (i, j):
    N = 4 L_i L_j, so ∇N = 4 L_j ∇L_i + 4 L_i ∇L_j.
    """
    w = np.zeros((4, 10, 4))
    for q, point in enumerate(_GAUSS):
        w[q, np.arange(4), np.arange(4)] = 4 * point - 1
        for e, (i, j) in enumerate(TET_EDGES):
            w[q, 4 + e, i] = 4 * point[j]
            w[q, 4 + e, j] = 4 * point[i]
    return w


#: Node pairs (a, b), a <= b, of a 10-node tetrahedron: 55 blocks per element.
_PAIR_A, _PAIR_B = np.triu_indices(10)
_W = _shape_gradient_weights()
#: ∫ ∂_k N_a ∂_l N_b dV = V Σ_ij _GRAM[pair, i, j] ∂_k L_i ∂_l L_j: the rule's weights
#: (a quarter each) folded in, so an element costs one product with this constant.
_GRAM = 0.25 * np.einsum("qpi,qpj->pij", _W[:, _PAIR_A], _W[:, _PAIR_B]).reshape(-1, 16)


def _barycentric_gradients(nodes: np.ndarray, tets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(m, 4, 3) gradients of the barycentric coordinates (1/mm) and (m,) signed volumes (mm³)."""
    a = nodes[tets[:, 0]]
    e1, e2, e3 = (nodes[tets[:, i]] - a for i in (1, 2, 3))
    c23, c31, c12 = np.cross(e2, e3), np.cross(e3, e1), np.cross(e1, e2)
    det = np.einsum("ij,ij->i", e1, c23)
    grad = np.stack([c23, c31, c12], axis=1) / det[:, None, None]
    return np.concatenate([-grad.sum(axis=1, keepdims=True), grad], axis=1), det / 6.0


def _gradient_products(nodes: np.ndarray, tets: np.ndarray) -> np.ndarray:
    """(3, 3, m, 55): ``G[k, l, element, pair] = ∫ ∂_k N_a ∂_l N_b dV`` (mm) per node pair.

    Pairs (a, b), a <= b, in ``_PAIR_A``/``_PAIR_B`` order.  Isotropic
    elasticity gives the pair's block from it, K_ab = λ G_ab + μ G_abᵀ +
    μ tr(G_ab) I, which is linear: G is summed over the elements first.
    """
    m = len(tets)
    grad_l, volume = _barycentric_gradients(nodes, tets)
    g = grad_l.transpose(2, 0, 1)                                       # (k, m, i)
    # outer[k, l, m, i, j] = V ∂_k L_i ∂_l L_j
    outer = g[:, None, :, :, None] * (g * volume[None, :, None])[None, :, :, None, :]
    return (outer.reshape(9 * m, 16) @ _GRAM.T).reshape(3, 3, m, -1)


def _isotropic_blocks(gram: np.ndarray, lam: float, mu: float) -> np.ndarray:
    """(p, 3, 3) stiffness blocks from summed gradient products ``gram`` (9, p), (k, l) order."""
    k = np.empty((gram.shape[1], 3, 3))
    trace = mu * (gram[0] + gram[4] + gram[8])
    for i in range(3):
        for j in range(3):
            k[:, i, j] = lam * gram[3 * i + j] + mu * gram[3 * j + i]
        k[:, i, i] += trace
    return k


@dataclass(frozen=True)
class StiffnessBlocks:
    """A global stiffness matrix as 3 × 3 blocks of node pairs, upper triangle only.

    ``blocks[p]`` is ``K[3 rows[p] : 3 rows[p] + 3, 3 cols[p] : 3 cols[p] + 3]``
    (N/mm) with ``rows[p] <= cols[p]``; each pair once, sorted by row then column.
    """

    rows: np.ndarray
    cols: np.ndarray
    blocks: np.ndarray
    n_nodes: int

    def tocsr(self) -> sparse.csr_matrix:
        """The whole symmetric matrix (3n × 3n), three DOFs per node in x, y, z order."""
        d3 = np.arange(3)
        r = (3 * self.rows[:, None, None] + d3[None, :, None]) + np.zeros(3, dtype=np.int64)
        c = (3 * self.cols[:, None, None] + d3[None, None, :]) + np.zeros((3, 1), dtype=np.int64)
        off = self.rows != self.cols
        n = 3 * self.n_nodes
        upper = sparse.coo_matrix((self.blocks.ravel(), (r.ravel(), c.ravel())), shape=(n, n))
        lower = sparse.coo_matrix((self.blocks[off].transpose(0, 2, 1).ravel(),
                                   (c[off].transpose(0, 2, 1).ravel(),
                                    r[off].transpose(0, 2, 1).ravel())), shape=(n, n))
        return (upper.tocsr() + lower.tocsr()).tocsr()

    @classmethod
    def from_sparse(cls, matrix: sparse.spmatrix) -> StiffnessBlocks:
        """The blocks of a symmetric sparse matrix with three DOFs per node."""
        bsr = sparse.bsr_matrix(matrix, blocksize=(3, 3))
        bsr.sum_duplicates()
        rows = np.repeat(np.arange(bsr.shape[0] // 3), np.diff(bsr.indptr))
        upper = rows <= bsr.indices
        return cls(rows[upper], bsr.indices[upper].astype(np.int64), bsr.data[upper],
                   bsr.shape[0] // 3)


def stiffness_blocks(nodes: np.ndarray, tets: np.ndarray, modulus_mpa: float,
                     poisson: float) -> StiffnessBlocks:
    """The global stiffness of quadratic tetrahedra ``tets`` (m, 10) as node-pair blocks."""
    n = len(nodes)
    tets = np.asarray(tets, dtype=np.int64)
    per = len(_PAIR_A)
    key = np.empty(len(tets) * per, dtype=np.int64)
    for lo in range(0, len(tets), _CHUNK):
        a, b = tets[lo:lo + _CHUNK, _PAIR_A], tets[lo:lo + _CHUNK, _PAIR_B]
        key[lo * per:(lo + len(a)) * per] = (np.minimum(a, b) * n + np.maximum(a, b)).ravel()
    order = _argsort(key)
    ordered = key[order]
    del key
    new_pair = np.r_[True, ordered[1:] != ordered[:-1]]
    which = np.empty(len(order), dtype=np.int64)
    which[order] = np.cumsum(new_pair) - 1
    pair = ordered[new_pair]
    del order, ordered, new_pair
    # Every element's products go to its pairs' (lower node, higher node)
    # blocks: component (k, l), or (l, k) where the pair's nodes come the
    # other way.  One component at a time keeps the sums in cache; bincount
    # adds in input order, so they are the same on every run.
    summed = np.zeros((9, len(pair)))
    for lo in range(0, len(tets), _CHUNK):
        part = tets[lo:lo + _CHUNK]
        at = which[lo * per:(lo + len(part)) * per]
        swap = (part[:, _PAIR_A] > part[:, _PAIR_B]).ravel()
        # The products' matrix product on one BLAS thread: threaded, OpenBLAS
        # gives other last bits (and this small product gains nothing).
        with threadpool_limits(limits=1, user_api="blas"):
            gram = _gradient_products(nodes, part).reshape(3, 3, -1)
        for k in range(3):
            for l in range(3):
                values = np.where(swap, gram[l, k], gram[k, l]) if k != l else gram[k, l]
                summed[3 * k + l] += np.bincount(at, weights=values, minlength=len(pair))
    del which, gram
    lam, mu = _lame(modulus_mpa, poisson)
    return StiffnessBlocks(pair // n, pair % n, _isotropic_blocks(summed, lam, mu), n)


def _argsort(key: np.ndarray) -> np.ndarray:
    """A stable argsort of non-negative int64 keys.

    Packs the position into the low bits and sorts values (several times
    quicker than ``np.argsort`` on millions of keys) when both fit in 63 bits.
    """
    n = len(key)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    bits = max(int(n - 1).bit_length(), 1)
    if int(key.max()) < (1 << (63 - bits)):
        packed = np.sort((key << bits) | np.arange(n, dtype=np.int64))
        return packed & ((1 << bits) - 1)
    return np.argsort(key, kind="stable")


def assemble_stiffness(nodes: np.ndarray, tets: np.ndarray, modulus_mpa: float,
                       poisson: float) -> sparse.csr_matrix:
    """The global stiffness matrix (3n × 3n, N/mm), three DOFs per node in x, y, z order."""
    return stiffness_blocks(nodes, tets, modulus_mpa, poisson).tocsr()


def _rigid_map(points: np.ndarray, reference: np.ndarray) -> sparse.csr_matrix:
    """(3k × 6) map from the body's (U, Θ) at ``reference`` to the points' displacements."""
    k = len(points)
    maps = _rigid_blocks(points, reference)
    rows = np.repeat(3 * np.arange(k)[:, None] + np.arange(3), 6, axis=1).ravel()
    cols = np.tile(np.arange(6), 3 * k)
    return sparse.csr_matrix((maps.ravel(), (rows, cols)), shape=(3 * k, 6))


def _rigid_blocks(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(k, 3, 6): each point's displacement from the body's (U, Θ), ``U + Θ × r``."""
    r = np.asarray(points, dtype=float) - reference
    t = np.zeros((len(r), 3, 6))
    t[:, [0, 1, 2], [0, 1, 2]] = 1.0
    # Θ × r: x = Θy rz - Θz ry, y = Θz rx - Θx rz, z = Θx ry - Θy rx.
    t[:, 0, 4], t[:, 0, 5] = r[:, 2], -r[:, 1]
    t[:, 1, 5], t[:, 1, 3] = r[:, 0], -r[:, 2]
    t[:, 2, 3], t[:, 2, 4] = r[:, 1], -r[:, 0]
    return t


def rigid_body_stiffness(stiffness: StiffnessBlocks | sparse.spmatrix, nodes: np.ndarray,
                         clamped: np.ndarray, tied: np.ndarray, reference: np.ndarray, *,
                         elements: np.ndarray | None = None,
                         params: SolverParams = SolverParams()) -> np.ndarray:
    """The 6 × 6 stiffness of a rigid body tied to ``tied`` nodes, ``clamped`` ones fixed.

    Order (Ux, Uy, Uz, Θx, Θy, Θz) at ``reference``; N/mm, N, N·mm/rad.
    ``elements`` (m, 10), the quadratic tetrahedra the matrix came from,
    make the elimination order quick to find (on their corner nodes);
    without them every node is ordered.  ``params`` say how the free
    unknowns are eliminated.

    Raises
    ------
    ValueError
        When the node sets overlap or one is empty.
    SingularStiffnessError
        When the free nodes can move without strain (a part held by neither set).
    """
    if not clamped.any() or not tied.any():
        raise ValueError("both the clamped and the tied node sets must be non-empty")
    if (clamped & tied).any():
        raise ValueError("a node cannot be both clamped and tied")
    if not isinstance(stiffness, StiffnessBlocks):
        stiffness = StiffnessBlocks.from_sparse(stiffness)
    free = ~(clamped | tied)
    tree = elimination_tree(stiffness, free, elements, points=nodes,
                            leaf_dofs=params.leaf_dofs)
    # Condensed about the tied nodes' centre, then moved (exact algebra):
    # short lever arms keep the entries that cancel small.
    centre = nodes[tied].mean(axis=0)
    columns, body = _bordered_columns(stiffness, nodes, free, tied, centre, tree)
    log.info("stiffness: eliminating %d free DOFs in %d fronts", 3 * free.sum(),
             len(tree.parent))
    # LAPACK and BLAS threaded sum in an order that depends on the thread
    # count, and the numbers must not.
    with threadpool_limits(limits=1, user_api="blas"):
        schur, pivots = _multifrontal(tree, columns)
    body += schur
    if len(pivots):
        log.info("stiffness: smallest pivot %.3g of the largest", pivots.min() / pivots.max())
        if pivots.min() < params.pivot_floor * pivots.max():
            raise SingularStiffnessError(_MECHANISM)
    body = move_reference(body, centre, reference)
    return 0.5 * (body + body.T)


@dataclass(frozen=True)
class EliminationTree:
    """Fronts of free nodes in elimination order.

    The free nodes are renumbered so that front ``f`` holds nodes
    ``start[f]`` to ``start[f + 1] - 1``; fronts are in postorder (children
    before parents), ``parent[f]`` is -1 at a root.
    """

    order: np.ndarray      # (n_free,) node index, in elimination order
    start: np.ndarray      # (fronts + 1,)
    parent: np.ndarray     # (fronts,)


def elimination_tree(stiffness: StiffnessBlocks, free: np.ndarray,
                     elements: np.ndarray | None = None, *,
                     points: np.ndarray | None = None,
                     leaf_dofs: int = SolverParams.leaf_dofs) -> EliminationTree:
    """The fronts that eliminate the ``free`` nodes of ``stiffness``, by nested dissection.

    With ``elements`` the dissection runs on their free corner nodes, and a
    mid-node goes with the end of its edge eliminated first: a separator of
    corners separates the mid-nodes too, since every element's corners are
    neighbours.  Subtrees of at most ``leaf_dofs`` unknowns, and chains of
    single children, become one front each.  With the nodes' ``points``,
    each front's nodes go in order along its longest extent: a separator
    is a strip, and the piece of it beside a subtree is then a run of
    consecutive unknowns (fewer, longer copies when a child's update is
    added to its parent).
    """
    n = stiffness.n_nodes
    free_ids = np.flatnonzero(free)
    vertex, host_end = _ordering_vertices(stiffness, free, elements)
    ids = np.full(n, -1, dtype=np.int64)
    ids[vertex] = np.arange(len(vertex))
    graph = _vertex_graph(stiffness, elements, ids)
    perm = _dissection(graph)
    rank = np.empty(len(vertex), dtype=np.int64)
    rank[perm] = np.arange(len(vertex))
    # Every free node's ordering vertex (in elimination order).
    at = np.full(n, -1, dtype=np.int64)
    at[vertex] = rank
    if host_end is not None:
        mids, ends = host_end
        first = np.where(free[ends], rank[np.maximum(ids[ends], 0)], len(vertex))
        at[mids] = first.min(axis=1)
    permuted = graph[perm][:, perm].tocsr()
    permuted.sort_indices()
    parent = _etree(permuted.indptr, permuted.indices)
    dofs = 3 * np.bincount(at[free_ids], minlength=len(vertex))
    front_of = _amalgamate(parent, dofs, leaf_dofs)
    # Fronts numbered by their top vertex; then put in postorder.
    tops, front_of = np.unique(front_of, return_inverse=True)
    front_parent = np.where(parent[tops] >= 0, front_of[np.maximum(parent[tops], 0)], -1)
    post = _postorder(front_parent)
    place = np.empty(len(post), dtype=np.int64)
    place[post] = np.arange(len(post))
    front = place[front_of[at[free_ids]]]
    along = at[free_ids] if points is None else _along_front(points[free_ids], front)
    order = free_ids[np.lexsort((free_ids, along, front))]
    start = np.r_[0, np.cumsum(np.bincount(front, minlength=len(post)))]
    new_parent = np.where(front_parent[post] >= 0, place[np.maximum(front_parent[post], 0)], -1)
    return EliminationTree(order=order, start=start, parent=new_parent)


def _along_front(points: np.ndarray, front: np.ndarray) -> np.ndarray:
    """Each point's place along the principal axis of its front's points."""
    n = int(front.max()) + 1 if len(front) else 0
    count = np.maximum(np.bincount(front, minlength=n), 1)
    mean = np.stack([np.bincount(front, points[:, i], n) for i in range(3)], 1) / count[:, None]
    d = points - mean[front]
    scatter = np.stack([np.bincount(front, d[:, i] * d[:, j], n)
                        for i in range(3) for j in range(3)], 1).reshape(-1, 3, 3)
    axis = np.linalg.eigh(scatter)[1][:, :, 2]
    return np.einsum("ij,ij->i", d, axis[front])


def _ordering_vertices(stiffness: StiffnessBlocks, free: np.ndarray,
                       elements: np.ndarray | None):
    """The free nodes the dissection orders, and the others with the ends they go with."""
    if elements is None:
        return np.flatnonzero(free), None
    tets = np.asarray(elements, dtype=np.int64)
    corner = np.zeros(stiffness.n_nodes, dtype=bool)
    corner[tets[:, :4].ravel()] = True
    mids = tets[:, 4:].ravel()
    ends = tets[:, TET_EDGES].reshape(-1, 2)
    mids, first = np.unique(mids, return_index=True)
    ends = ends[first]
    keep = free[mids] & ~corner[mids]
    mids, ends = mids[keep], ends[keep]
    # A free mid-node between two held corners is ordered itself, and so is
    # a node in no element (it makes the matrix singular, found as such).
    attached = (free[ends] & corner[ends]).any(axis=1)
    hosted = np.zeros(stiffness.n_nodes, dtype=bool)
    hosted[mids[attached]] = True
    return np.flatnonzero(free & ~hosted), (mids[attached], ends[attached])


def _vertex_graph(stiffness: StiffnessBlocks, elements: np.ndarray | None,
                  ids: np.ndarray) -> sparse.csr_matrix:
    """Adjacency of the ordering vertices (numbered by ``ids``): sharing an element or a block."""
    if elements is None:
        a, b = ids[stiffness.rows], ids[stiffness.cols]
    else:
        tets = ids[np.asarray(elements, dtype=np.int64)]
        i, j = np.triu_indices(tets.shape[1], 1)
        a, b = tets[:, i].ravel(), tets[:, j].ravel()
    keep = (a >= 0) & (b >= 0) & (a != b)
    a, b = a[keep], b[keep]
    m = int(ids.max()) + 1
    graph = sparse.csr_matrix((np.ones(2 * len(a), dtype=np.int8),
                               (np.r_[a, b], np.r_[b, a])), shape=(m, m))
    graph.sum_duplicates()
    return graph


def _dissection(graph: sparse.csr_matrix) -> np.ndarray:
    """METIS's nested dissection order of a graph: ``perm[new] = old``."""
    if graph.shape[0] <= 1:
        return np.arange(graph.shape[0], dtype=np.int64)
    perm, _ = pymetis.nested_dissection(
        pymetis.CSRAdjacency(graph.indptr.astype(np.int32), graph.indices.astype(np.int32)))
    return np.asarray(perm, dtype=np.int64)


def _etree(indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Elimination tree of a symmetric pattern given in elimination order (Liu 1986).

    ``parent[j]`` is the first vertex after ``j`` that eliminating ``j``
    couples to (-1 at a root).  A path joined through its middle vertex:

    >>> g = sparse.csr_matrix(np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]]))
    >>> _etree(g.indptr, g.indices).tolist()
    [1, 2, -1]
    >>> g = sparse.csr_matrix(np.array([[0, 0, 1], [0, 0, 1], [1, 1, 0]]))
    >>> _etree(g.indptr, g.indices).tolist()
    [2, 2, -1]
    """
    n = len(indptr) - 1
    parent = [-1] * n
    ancestor = [-1] * n
    starts, ends, neighbours = indptr[:-1].tolist(), indptr[1:].tolist(), indices.tolist()
    for k in range(n):
        for j in neighbours[starts[k]:ends[k]]:
            if j >= k:
                continue
            # Climb from j to the root of its subtree so far, pointing the way at k.
            while True:
                up = ancestor[j]
                if up == k:
                    break
                ancestor[j] = k
                if up == -1:
                    parent[j] = k
                    break
                j = up
    return np.asarray(parent, dtype=np.int64)


def _amalgamate(parent: np.ndarray, dofs: np.ndarray, leaf_dofs: int) -> np.ndarray:
    """Per vertex, the top vertex of its front: small subtrees and single-child chains merged."""
    n = len(parent)
    has_parent = parent >= 0
    up = np.where(has_parent, parent, 0)
    subtree = dofs.astype(np.int64).copy()
    children = np.bincount(parent[has_parent], minlength=n)
    # Parents come after their children, so one pass in order sums each subtree.
    sub, par = subtree.tolist(), parent.tolist()
    for j in range(n):
        if par[j] >= 0:
            sub[par[j]] += sub[j]
    subtree = np.asarray(sub)
    joins = has_parent & ((subtree[up] <= leaf_dofs) | (children[up] == 1))
    top = list(range(n))
    join = joins.tolist()
    for j in range(n - 1, -1, -1):
        if join[j]:
            top[j] = top[par[j]]
    return np.asarray(top, dtype=np.int64)


def _postorder(parent: np.ndarray) -> np.ndarray:
    """The vertices of a forest, every child before its parent, subtrees kept together."""
    children: list[list[int]] = [[] for _ in range(len(parent))]
    roots = []
    for v, p in enumerate(parent.tolist()):
        (roots if p < 0 else children[p]).append(v)
    order: list[int] = []
    stack = [(r, False) for r in reversed(roots)]
    while stack:
        v, done = stack.pop()
        if done:
            order.append(v)
            continue
        stack.append((v, True))
        stack.extend((c, False) for c in reversed(children[v]))
    return np.asarray(order, dtype=np.int64)


@dataclass(frozen=True)
class _Columns:
    """The bordered matrix's lower triangle by node columns, in elimination order.

    Free nodes are 0 to n_free - 1.  Column ``c`` holds ``blocks[ptr[c]:ptr[c + 1]]``
    at free rows ``rows[...]`` (>= c); the free nodes ``coupled`` (rising)
    also couple to the body's six unknowns, two more "nodes" n_free
    (translations) and n_free + 1 (rotations), by ``coupling`` (q, 6, 3).
    """

    rows: np.ndarray
    blocks: np.ndarray     # (p, 3, 3): K[row, col]
    ptr: np.ndarray
    coupled: np.ndarray
    coupling: np.ndarray
    n_free: int


def _bordered_columns(stiffness: StiffnessBlocks, nodes: np.ndarray, free: np.ndarray,
                      tied: np.ndarray, reference: np.ndarray,
                      tree: EliminationTree) -> tuple[_Columns, np.ndarray]:
    """The free nodes' columns of the bordered matrix, and the body's own 6 × 6 (K_rr)."""
    n_free = len(tree.order)
    new = np.full(stiffness.n_nodes, -1, dtype=np.int64)
    new[tree.order] = np.arange(n_free)
    r, c, k = stiffness.rows, stiffness.cols, stiffness.blocks
    fr, fc, tr, tc = free[r], free[c], tied[r], tied[c]
    # Free-free: the lower block of each pair in the new numbering, by column.
    both = np.flatnonzero(fr & fc)
    a, b = new[r[both]], new[c[both]]
    rows, cols = np.maximum(a, b), np.minimum(a, b)
    order = _argsort(cols * n_free + rows)
    rows, cols, both = rows[order], cols[order], both[order]
    blocks = k[both]
    flip = np.flatnonzero((a < b)[order])
    blocks[flip] = blocks[flip].transpose(0, 2, 1)
    ptr = np.searchsorted(cols, np.arange(n_free + 1))
    del a, b, cols, order, flip
    # Free-tied: K_ft T_t summed per free node, a (3 × 6) coupling to the body.
    mixed = (fr & tc) | (tr & fc)
    row_free = fr[mixed]
    f_node = np.where(row_free, r[mixed], c[mixed])
    t_node = np.where(row_free, c[mixed], r[mixed])
    k_ft = np.where(row_free[:, None, None], k[mixed], k[mixed].transpose(0, 2, 1))
    coupled = np.einsum("pij,pjk->pik", k_ft, _rigid_blocks(nodes[t_node], reference))
    f_new = new[f_node]
    f_unique, which = np.unique(f_new, return_inverse=True)
    k_fr = np.zeros((len(f_unique), 3, 6))
    np.add.at(k_fr, which, coupled)
    # Tied-tied: Σ_s T_sᵀ (Σ_t K_st T_t), the inner sum first: each node's
    # rows cancel to about nothing under a rigid motion (it strains no
    # element inside the cuff), so summing them first keeps the rounding
    # small against the 6 × 6 that is left.
    held = tr & tc
    t_all = _rigid_blocks(nodes, reference)
    hr, hc, kh = r[held], c[held], k[held]
    moved = np.zeros((stiffness.n_nodes, 3, 6))
    np.add.at(moved, hr, np.einsum("pkl,plj->pkj", kh, t_all[hc]))
    off = hr != hc
    np.add.at(moved, hc[off], np.einsum("plk,plj->pkj", kh[off], t_all[hr[off]]))
    at = np.flatnonzero(tied)
    k_rr = np.einsum("ski,skj->ij", t_all[at], moved[at])
    return _Columns(rows=rows, blocks=blocks, ptr=ptr, coupled=f_unique,
                    coupling=np.ascontiguousarray(k_fr.transpose(0, 2, 1)),
                    n_free=n_free), k_rr


@dataclass(frozen=True)
class _Front:
    """Where a front's entries go: its boundary, the matrix's entries, its children's updates."""

    boundary: np.ndarray          # later nodes the front couples to, rising
    #: The matrix's entries and their flat (column-major) positions in one
    #: buffer holding F11 (own × own) and then F21 (boundary × own).
    entry_at: np.ndarray
    entry_values: np.ndarray
    #: The same for the coupling of its nodes to the body.
    body_at: np.ndarray
    body_values: np.ndarray
    #: Per child: the split of its update's rows between this front's own
    #: unknowns and its boundary, the runs of its columns that land on
    #: consecutive columns here (first, end, first column here), and where
    #: its rows land in F11 and in F21/F22.
    children: list[tuple[int, list[tuple[int, int, int]], np.ndarray, np.ndarray]]


def _fronts(tree: EliminationTree, columns: _Columns) -> list[_Front]:
    """The symbolic factorisation: every front's boundary and where each entry lands.

    A front's boundary is the later nodes its own columns or its children's
    boundaries reach.  Raises RuntimeError if the tree lets a front couple to
    a node eliminated before it (the tree would be wrong).
    """
    n_fronts = len(tree.parent)
    starts = tree.start.tolist()
    children: list[list[int]] = [[] for _ in range(n_fronts)]
    for f, p in enumerate(tree.parent.tolist()):
        if p >= 0:
            children[p].append(f)
    d3 = np.arange(3)
    n_free = columns.n_free
    front_of = np.repeat(np.arange(n_fronts), np.diff(tree.start))
    touches = np.zeros(n_fronts, dtype=bool)
    touches[front_of[columns.coupled]] = True
    body = np.array([n_free, n_free + 1])
    boundaries: list[np.ndarray] = []
    taken_all = []
    for f in range(n_fronts):
        n0, n1 = starts[f], starts[f + 1]
        rows = columns.rows[columns.ptr[n0]:columns.ptr[n1]]
        parts = [rows[rows >= n1], body] if touches[f] else [rows[rows >= n1]]
        for c in children[f]:
            if len(boundaries[c]) and boundaries[c][0] < n0:
                raise RuntimeError("elimination tree: a front couples to one eliminated "
                                   "before it")
            parts.append(boundaries[c][boundaries[c] >= n1])
        boundary = np.unique(np.concatenate(parts))
        boundaries.append(boundary)
        own = n1 - n0
        k3 = 3 * own
        taken = []
        for child in children[f]:
            nodes = boundaries[child]
            inside = nodes < n1
            place = np.where(inside, nodes - n0,
                             own + np.searchsorted(boundary, np.where(inside, n1, nodes)))
            at = (3 * place[:, None] + d3).ravel()
            split = int(np.searchsorted(at, k3))
            breaks = np.flatnonzero(np.diff(at) != 1) + 1
            if 0 < split < len(at):
                breaks = np.union1d(breaks, [split])
            runs = [(c0, c1, int(at[c0])) for c0, c1 in
                    zip(np.r_[0, breaks].tolist(), np.r_[breaks, len(at)].tolist())]
            taken.append((split, runs, at[:split], at[split:] - k3))
        taken_all.append(taken)
    # Where the matrix's entries land, all fronts at once: the (p, 3, 3)
    # blocks at (3 row + i, 3 col + j) of their column's front, as flat
    # (Fortran) positions in F11 followed by F21 in one buffer.
    start = tree.start
    sizes = np.array([len(b) for b in boundaries], dtype=np.int64)
    column_node = np.repeat(np.arange(n_free), np.diff(columns.ptr))
    column_front = front_of[column_node]
    own = np.diff(start)[column_front]
    first = start[:-1][column_front]
    inside = columns.rows < first + own
    n_keys = columns.n_free + 2
    keys = np.repeat(np.arange(n_fronts), sizes) * n_keys + np.concatenate(
        boundaries + [np.zeros(0, dtype=np.int64)])
    beyond = (np.searchsorted(keys, column_front * n_keys + columns.rows)
              - np.r_[0, np.cumsum(sizes)][column_front])
    k3, b3 = 3 * own, 3 * sizes[column_front]
    col_at = 3 * (column_node - first)
    # Column-major: position = column × rows + row, F21 after F11's k3².
    height = np.where(inside, k3, b3)
    base = np.where(inside, 3 * (columns.rows - first), k3 * k3 + 3 * beyond) + col_at * height
    flat = (base[:, None, None] + d3[None, :, None]
            + d3[None, None, :] * height[:, None, None]).astype(np.int32).reshape(-1)
    values = columns.blocks.reshape(-1)
    bounds = 9 * columns.ptr[start]
    # The coupling to the body: (6, 3) blocks at the body's rows in F21.
    node = columns.coupled
    front = front_of[node]
    own, first = np.diff(start)[front], start[:-1][front]
    k3, b3 = 3 * own, 3 * sizes[front]
    beyond = (np.searchsorted(keys, front[:, None] * n_keys + body)
              - np.r_[0, np.cumsum(sizes)][front][:, None])                 # (q, 2)
    row = 3 * (own[:, None] + beyond)[:, :, None] + d3                      # (q, 2, 3)
    col = 3 * (node - first)[:, None] + d3                                  # (q, 3)
    body_at = (k3[:, None, None] * k3[:, None, None] + col[:, None, :] * b3[:, None, None]
               + (row.reshape(-1, 6) - k3[:, None])[:, :, None]).astype(np.int32).reshape(-1)
    body_bounds = 18 * np.searchsorted(node, start)
    coupling = columns.coupling.reshape(-1)
    return [_Front(boundaries[f], flat[bounds[f]:bounds[f + 1]], values[bounds[f]:bounds[f + 1]],
                   body_at[body_bounds[f]:body_bounds[f + 1]],
                   coupling[body_bounds[f]:body_bounds[f + 1]], taken_all[f])
            for f in range(n_fronts)]


def _multifrontal(tree: EliminationTree, columns: _Columns) -> tuple[np.ndarray, np.ndarray]:
    """Eliminate every free node; the Schur complement left on the body (6 × 6) and the pivots.

    Each front is dense: its own unknowns (block 11) and the later ones its
    subtree couples to (its boundary, block 22).  It gathers its columns of
    the matrix and its children's update matrices, is factorised
    (L11 L11ᵀ = F11, L21 = F21 L11⁻ᵀ) and leaves F22 - L21 L21ᵀ to its parent.
    Only lower triangles are kept.  Positions in a front follow the global
    order, so a child's lower triangle lands in its parent's.
    """
    fronts = _fronts(tree, columns)
    n_free = columns.n_free
    updates: dict[int, np.ndarray] = {}
    children: list[list[int]] = [[] for _ in range(len(fronts))]
    for f, p in enumerate(tree.parent.tolist()):
        if p >= 0:
            children[p].append(f)
    pivots = []
    starts = tree.start.tolist()
    for f, front in enumerate(fronts):
        k3, b3 = 3 * (starts[f + 1] - starts[f]), 3 * len(front.boundary)
        buffer = np.zeros(k3 * (k3 + b3))
        buffer[front.entry_at] = front.entry_values
        buffer[front.body_at] = front.body_values
        f11 = buffer[:k3 * k3].reshape(k3, k3, order="F")
        f21 = buffer[k3 * k3:].reshape(b3, k3, order="F")
        f22 = np.zeros((b3, b3), order="F")
        for child, (split, runs, inner, outer) in zip(children[f], front.children):
            _extend_add(updates.pop(child), split, runs, inner, outer, k3, f11, f21, f22)
        factor, info = lapack.dpotrf(f11, lower=1, overwrite_a=1, clean=0)
        if info != 0:
            # A pivot at or below zero: a mechanism met exactly, or rounding
            # of one gone negative.
            raise SingularStiffnessError(_MECHANISM)
        pivots.append(np.diagonal(factor) ** 2)
        if b3:
            l21 = blas.dtrsm(1.0, factor, f21, side=1, lower=1, trans_a=1, overwrite_b=1)
            f22 = blas.dsyrk(-1.0, l21, beta=1.0, c=f22, lower=1, overwrite_c=1)
        updates[f] = f22
    schur = np.zeros((6, 6))
    d3 = np.arange(3)
    for f, update in updates.items():
        # What is left couples only to the body.
        nodes = fronts[f].boundary
        if len(nodes) and nodes[0] < n_free:
            raise RuntimeError("elimination tree: a root front couples to a free node")
        at = (3 * (nodes - n_free)[:, None] + d3).ravel()
        lower = np.tril(update)
        schur[np.ix_(at, at)] += lower + np.tril(lower, -1).T
    return schur, np.concatenate(pivots) if pivots else np.zeros(0)


def _extend_add(update: np.ndarray, split: int, runs: list[tuple[int, int, int]],
                inner: np.ndarray, outer: np.ndarray, k3: int, f11: np.ndarray,
                f21: np.ndarray, f22: np.ndarray) -> None:
    """Add a child's update (lower triangle) into its parent's front.

    The child's rows land at ``inner`` (own unknowns, before ``split``) and
    ``outer`` (boundary) positions; its columns in runs of consecutive parent
    columns, each added as one slice of columns.
    """
    for c0, c1, j0 in runs:
        if j0 < k3:
            f11[inner[c0:], j0:j0 + c1 - c0] += update[c0:split, c0:c1]
            if len(outer):
                f21[outer, j0:j0 + c1 - c0] += update[split:, c0:c1]
        else:
            j0 -= k3
            f22[outer[c0 - split:], j0:j0 + c1 - c0] += update[c0:, c0:c1]


def move_reference(body: np.ndarray, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """The same rigid body's 6 × 6 stiffness with its reference moved from ``old`` to ``new``.

    Displacements at ``old`` are ``U_old = U_new + Θ × (old - new)``.
    """
    r = np.asarray(old, dtype=float) - np.asarray(new, dtype=float)
    skew = np.array([[0, -r[2], r[1]], [r[2], 0, -r[0]], [-r[1], r[0], 0]])
    # Θ × r = -r × Θ = -skew(r) Θ.
    a = np.eye(6)
    a[:3, 3:] = -skew
    return a.T @ body @ a
