"""Analytic test shapes inside [-0.5, 0.5]^3 (Z-up), with welded vertices, and mesh sampling helpers."""

from __future__ import annotations

import numpy as np
import torch
import trimesh


def sphere(radius: float = 0.33, subdivisions: int = 5) -> trimesh.Trimesh:
    return trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)


def torus(major: float = 0.28, minor: float = 0.11) -> trimesh.Trimesh:
    mesh = trimesh.creation.torus(
        major_radius=major, minor_radius=minor, major_sections=96, minor_sections=48
    )
    rot = trimesh.transformations.rotation_matrix(0.4, [1, 0.3, 0])
    mesh.apply_transform(rot)
    return mesh


def wavy_sheet(size: float = 0.7, n: int = 80) -> trimesh.Trimesh:
    """An open, gently curved height-field sheet (has a boundary)."""
    xs = np.linspace(-size / 2, size / 2, n)
    x, y = np.meshgrid(xs, xs, indexing="ij")
    z = 0.08 * np.sin(3 * x + 0.3) * np.cos(2 * y) + 0.013
    verts = np.stack([x, y, z], -1).reshape(-1, 3)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return trimesh.Trimesh(verts, faces, process=False)


def _grid_patch(origin, du, dv, n: int) -> tuple[np.ndarray, np.ndarray]:
    s = np.linspace(0, 1, n)
    u, v = np.meshgrid(s, s, indexing="ij")
    verts = origin + u[..., None] * du + v[..., None] * dv
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return verts.reshape(-1, 3), faces


def t_junction(n: int = 60) -> trimesh.Trimesh:
    """Two thin open sheets meeting in a T (a non-manifold junction line), slightly tilted off the grid."""
    base_v, base_f = _grid_patch(
        np.array([-0.35, -0.3, -0.1]), np.array([0.7, 0, 0.02]), np.array([0, 0.6, 0.01]), n
    )
    stem_v, stem_f = _grid_patch(
        np.array([-0.35, 0.003, -0.1]), np.array([0.7, 0, 0.02]), np.array([0, 0.01, 0.45]), n
    )
    mesh = trimesh.Trimesh(np.concatenate([base_v, stem_v]), np.concatenate([base_f, stem_f + len(base_v)]))
    return mesh


def sample_surface(mesh: trimesh.Trimesh, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Uniform area-weighted surface samples: (points (count, 3), face index (count,))."""
    points, face = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return np.asarray(points), np.asarray(face)


def point_to_mesh_distance(points: np.ndarray, mesh: trimesh.Trimesh) -> np.ndarray:
    """Exact unsigned distance from points to a triangle mesh."""
    from cumesh.bvh import MeshBVH

    bvh = MeshBVH(
        torch.as_tensor(mesh.vertices, dtype=torch.float32), torch.as_tensor(mesh.faces, dtype=torch.int64)
    )
    dist, _, _ = bvh.closest_point(torch.as_tensor(points, dtype=torch.float32))
    return dist.numpy()


def chamfer(a: trimesh.Trimesh, b: trimesh.Trimesh, count: int = 20000) -> tuple[float, float]:
    """(mean, max) of the symmetric surface distance between two meshes (point samples to exact surface)."""
    pa, _ = sample_surface(a, count, seed=1)
    pb, _ = sample_surface(b, count, seed=2)
    d_ab, d_ba = point_to_mesh_distance(pa, b), point_to_mesh_distance(pb, a)
    return 0.5 * (float(d_ab.mean()) + float(d_ba.mean())), max(float(d_ab.max()), float(d_ba.max()))
