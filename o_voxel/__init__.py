"""O-Voxel: the sparse voxel representation of TRELLIS.2 and the export to PBR GLB."""
