"""The scan zoo: an independent family of synthetic limb scans with known truth.

This package owns making test scans of a foot / ankle / lower leg that orthofit
was not tuned on, and the ground truth that goes with each one:

- ``source``: true limbs from the CC0 MakeHuman body and the CC BY 4.0 Visible
  Human Female skin (parsing, morphs, cropping, capping, mm);
- ``pose``: a foot plantarflexed about its ankle joint, and the weight-bearing
  flattening of a standing sole;
- ``limb``: a case's true limb (source leg posed, loaded, cut and capped) and its
  plantar plane;
- ``clutter``: floor, platform, an orthotist's hand, a stool leg, the other foot,
  stray points;
- ``scanner``: this package's own handheld-scanner simulation (sweeps of range
  images, noise, grazing dropout, per-sweep misregistration, floor occlusion,
  its own TSDF meshing);
- ``cases``: the named cases and their parameters;
- ``truth``: the truth record of a case (landmarks, planes, angles, methods);
- ``exchange``: writing scan and truth files byte for byte;
- ``generate``: the cache of generated cases and the command line;
- ``fit``: measures of a device mesh against the true skin;
- ``audit``: the zoo's self-checks from the files a case wrote: the scan's signed
  distance to the true skin, a meshed scan's single sheet, unseen skin by region,
  clutter gaps (``python -m tests.zoo.audit`` exits 1 on a case that breaks them);
- ``render``: PNG pictures of a case (seen and unseen skin, clutter, a meshed scan);
- ``vh_landmarks.json``: the Visible Human legs' hand-marked landmarks and method.

It must not import ``orthofit`` nor share code with ``scans/`` (the project's own
sample scans are a different family, made by a different scanner), must not
write anywhere but its cache folder, and must stay deterministic: the same case
gives byte-identical files on every run.
"""
