"""Fresnel from TRELLIS.2: distil the 4B teacher into a Fresnel student (`genesis fresnel distill`).

1. Teacher data (`teacher_data`, `targets`, `store`): TRELLIS.2 runs on every image (and on every
   multi-view sub-folder) for a few seeds, in a child process that is restarted after a crash; each run is
   stored as compact targets in the teacher's object frame (`store` says what and where).
2. Training (`dataset`, `frames`): the targets are mapped into the student's camera-aligned grid through
   the camera pose that makes the teacher's shape match the image's silhouette (`frames.fit_pose`), and
   the student — a `FresnelNet` with the structure-noise input, started from a checkpoint — learns them
   with `fresnel.training`'s loop and loss, given the teacher's noise for each seed.
3. Evaluation and card (`evaluate`): held-out images, Chamfer-L1 / F-score against the teacher's mesh,
   base-colour error and the time of both, written into the models-folder entry's `card.md`.

`run.distill` does all three; the result is `<models>/fresnel/<name>/`, which the Fast engine lists.
"""
