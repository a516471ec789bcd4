"""Linear elasticity on quadratic tetrahedra, condensed onto a rigid cuff.

This module owns the numbers of the finite-element solve: the element
stiffness of straight-sided 10-node tetrahedra (four-point Gauss rule, exact
for them), its sparse assembly, and the stiffness of a rigid body tied to a
set of nodes with another set clamped.  Everything else about the model
(which nodes, which axes) comes from the caller.  Units: mm, N, MPa; a
rotational stiffness comes out in N·mm/rad.

The tied nodes follow the rigid body, ``u = U + Θ × (x - p)``; the free
nodes are condensed out (one sparse LU factorisation, six solves), leaving
the 6 × 6 stiffness of the body at ``p``.  Every load case on the cuff (a
pure moment, a rotation about an axis with a slide along the shank) is then
exact linear algebra on that matrix.  The unknowns are ordered by METIS's
nested dissection of the node graph (half the fill of SuperLU's own
minimum-degree ordering on thin shells); SuperLU and the BLAS under it run
on one thread, so the same mesh gives the same numbers on every machine.
"""

from __future__ import annotations

import logging

import numpy as np
import pymetis
from scipy import sparse
from scipy.sparse.linalg import splu
from threadpoolctl import threadpool_limits

from .femesh import TET_EDGES

__all__ = ["SingularStiffnessError", "isotropic_matrix", "assemble_stiffness",
           "rigid_body_stiffness", "move_reference"]

log = logging.getLogger(__name__)

# Four-point Gauss rule on the tetrahedron: exact for quadratics, and the
# integrand B^T D B of a straight-sided quadratic tetrahedron is quadratic.
_A, _B = 0.5854101966249685, 0.1381966011250105
_GAUSS = np.array([[_A, _B, _B, _B], [_B, _A, _B, _B], [_B, _B, _A, _B], [_B, _B, _B, _A]])
_CHUNK = 16384
# A pivot under this share of the largest is a rounding error standing for a
# zero: the free nodes hold a mechanism (1e-16 for a tetrahedron hanging by an
# edge), where the sample devices and the test walls give 3e-5 and more [eng].
_PIVOT_FLOOR = 1e-12
_MECHANISM = ("a part of the wall can move with no load on it (a mechanism the "
              "finite-element model could not hold)")


class SingularStiffnessError(ArithmeticError):
    """The free part of a stiffness matrix is singular: something in it can move unloaded."""


def isotropic_matrix(modulus_mpa: float, poisson: float) -> np.ndarray:
    """The 6 × 6 elasticity matrix (Voigt order xx, yy, zz, yz, xz, xy; engineering shear)."""
    e, nu = modulus_mpa, poisson
    lam = e * nu / ((1 + nu) * (1 - 2 * nu))
    mu = e / (2 * (1 + nu))
    d = np.zeros((6, 6))
    d[:3, :3] = lam
    d[np.arange(3), np.arange(3)] = lam + 2 * mu
    d[np.arange(3, 6), np.arange(3, 6)] = mu
    return d


def _element_matrices(nodes: np.ndarray, tets: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Stiffness matrices (m, 30, 30) of straight-sided quadratic tetrahedra."""
    corners = nodes[tets[:, :4]]                       # (m, 4, 3)
    m = np.ones((len(tets), 4, 4))
    m[:, 1:, :] = corners.transpose(0, 2, 1)
    volume = np.linalg.det(m) / 6.0
    # Barycentric gradients: L = M^-1 [1, x, y, z]^T, so dL_i/dx_k = inv(M)[i, k + 1].
    grad_l = np.linalg.inv(m)[:, :, 1:]               # (m, 4, 3)
    ke = np.zeros((len(tets), 30, 30))
    i0, i1 = TET_EDGES[:, 0], TET_EDGES[:, 1]
    for point in _GAUSS:
        # Corner: N = L(2L - 1); mid-node: N = 4 L_i L_j.
        g = np.empty((len(tets), 10, 3))
        g[:, :4] = (4 * point - 1)[None, :, None] * grad_l
        g[:, 4:] = 4 * (point[i1][None, :, None] * grad_l[:, i0]
                        + point[i0][None, :, None] * grad_l[:, i1])
        b = np.zeros((len(tets), 6, 30))
        b[:, 0, 0::3] = g[:, :, 0]
        b[:, 1, 1::3] = g[:, :, 1]
        b[:, 2, 2::3] = g[:, :, 2]
        b[:, 3, 1::3] = g[:, :, 2]
        b[:, 3, 2::3] = g[:, :, 1]
        b[:, 4, 0::3] = g[:, :, 2]
        b[:, 4, 2::3] = g[:, :, 0]
        b[:, 5, 0::3] = g[:, :, 1]
        b[:, 5, 1::3] = g[:, :, 0]
        ke += np.matmul(b.transpose(0, 2, 1), np.matmul(d, b)) * (volume / 4.0)[:, None, None]
    return ke


def assemble_stiffness(nodes: np.ndarray, tets: np.ndarray, modulus_mpa: float,
                       poisson: float) -> sparse.csr_matrix:
    """The global stiffness matrix (3n × 3n, N/mm), three DOFs per node in x, y, z order."""
    d = isotropic_matrix(modulus_mpa, poisson)
    n_dof = 3 * len(nodes)
    # Each element's upper triangle (and diagonal) only; the lower is its mirror.
    upper_i, upper_j = np.triu_indices(30)
    parts = []
    for lo in range(0, len(tets), _CHUNK):
        part = tets[lo:lo + _CHUNK]
        ke = _element_matrices(nodes, part, d)[:, upper_i, upper_j]
        dofs = (3 * part[:, :, None] + np.arange(3)).reshape(len(part), 30).astype(np.int32)
        a, b = dofs[:, upper_i].ravel(), dofs[:, upper_j].ravel()
        # Row <= column, so every entry lands in the upper triangle.
        parts.append(sparse.coo_matrix((ke.ravel(), (np.minimum(a, b), np.maximum(a, b))),
                                       shape=(n_dof, n_dof)).tocsr())
    upper = parts[0]
    for part in parts[1:]:
        upper = upper + part
    diagonal = sparse.diags(upper.diagonal())
    return (upper + upper.T - diagonal).tocsr()


def _rigid_map(points: np.ndarray, reference: np.ndarray) -> sparse.csr_matrix:
    """(3k × 6) map from the body's (U, Θ) at ``reference`` to the points' displacements."""
    r = points - reference
    k = len(points)
    rows, cols, vals = [], [], []
    for c in range(3):
        rows.append(3 * np.arange(k) + c)
        cols.append(np.full(k, c))
        vals.append(np.ones(k))
    # Θ × r: x = Θy rz - Θz ry, y = Θz rx - Θx rz, z = Θx ry - Θy rx.
    for comp, theta, coeff in ((0, 4, r[:, 2]), (0, 5, -r[:, 1]), (1, 5, r[:, 0]),
                               (1, 3, -r[:, 2]), (2, 3, r[:, 1]), (2, 4, -r[:, 0])):
        rows.append(3 * np.arange(k) + comp)
        cols.append(np.full(k, theta))
        vals.append(coeff)
    return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(3 * k, 6))


def rigid_body_stiffness(stiffness: sparse.csr_matrix, nodes: np.ndarray, clamped: np.ndarray,
                         tied: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The 6 × 6 stiffness of a rigid body tied to ``tied`` nodes, ``clamped`` ones fixed.

    Order (Ux, Uy, Uz, Θx, Θy, Θz) at ``reference``; N/mm, N, N·mm/rad.

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
    free = ~(clamped | tied)
    dof = lambda mask: (3 * np.flatnonzero(mask)[:, None] + np.arange(3)).ravel()  # noqa: E731
    f, s = dof(free), dof(tied)
    t = _rigid_map(nodes[tied], reference)
    k_ff = stiffness[f][:, f].tocsc()
    k_fs = stiffness[f][:, s]
    k_ss = stiffness[s][:, s]
    k_fr = (k_fs @ t).toarray()
    k_rr = (t.T @ k_ss @ t).toarray()
    log.info("stiffness: factorising %d free DOFs", len(f))
    order = _nested_dissection(k_ff)
    # SuperLU's dense kernels call BLAS; threaded, they sum in an order that
    # depends on the thread count, and the numbers must not.
    with threadpool_limits(limits=1, user_api="blas"):
        try:
            lu = splu(k_ff[order][:, order].tocsc(), permc_spec="NATURAL",
                      diag_pivot_thresh=0.0, options={"SymmetricMode": True})
        except RuntimeError as exc:  # SuperLU: "Factor is exactly singular"
            raise SingularStiffnessError(_MECHANISM) from exc
        # A mechanism may also meet a pivot of rounding error instead of an
        # exact zero, and then solves to noise: refuse that too.
        pivots = np.abs(lu.U.diagonal())
        log.info("stiffness: smallest pivot %.3g of the largest", pivots.min() / pivots.max())
        if pivots.min() < _PIVOT_FLOOR * pivots.max():
            raise SingularStiffnessError(_MECHANISM)
        y = np.empty_like(k_fr)
        y[order] = lu.solve(k_fr[order])
    # einsum, not BLAS, for the same reason.
    body = k_rr - np.einsum("ij,ik->jk", k_fr, y)
    return 0.5 * (body + body.T)


def _nested_dissection(k_ff: sparse.csc_matrix) -> np.ndarray:
    """A fill-reducing order of the DOFs (three per node, kept together) by METIS."""
    # Nodes are coupled where their x unknowns are: the x-x block's structure
    # (kept entries, even those that sum to zero) is the node graph.
    nodes = sparse.csr_matrix(k_ff[0::3, 0::3], copy=True)
    nodes.data[:] = 1.0
    nodes.setdiag(0.0)
    nodes.eliminate_zeros()
    nodes.sort_indices()
    # Four separators tried per level, refined longer: about a tenth less
    # factorisation time on an adult AFO than METIS's defaults [eng].
    perm, _ = pymetis.nested_dissection(
        pymetis.CSRAdjacency(nodes.indptr.astype(np.int32), nodes.indices.astype(np.int32)),
        options=pymetis.Options(nseps=4, niter=20))
    perm = np.asarray(perm, dtype=np.int64)
    return (3 * perm[:, None] + np.arange(3)).ravel()


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
