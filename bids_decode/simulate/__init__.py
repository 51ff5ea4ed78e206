"""A small ds001246- or ds001506-shaped dataset with a planted ground truth, for demos and tests.

Real events drive the simulation: ds001246's sub-01..03 (CC0, ``bids_decode/data/ds001246``),
or ds001506's sub-01 (``--layout ds001506``, ``bids_decode/data/ds001506``: numeric event codes,
TR 2 s). Every image has a latent vector ``z`` (``n_latent`` dims). Unit ``u`` of a layer is

    y_u = offset_u + scale_u * (rho_u * (b_u . z) + sqrt(1 - rho_u**2) * noise)

with ``rho_u`` the planted decodability (the correlation of the unit with the part of it the
brain carries, so on the scale of the accuracy, Pearson r, of a perfect decoder),
the same for every subject. Each subject's ROI voxels respond to ``A_s z`` (subject-specific
``A_s``) convolved with a haemodynamic response (peak about 5 s after the stimulus), plus drift
and noise; ``A_s`` is sparse (half of the ROI voxels carry signal) and hemisphere-specific
(each hemisphere carries two thirds of the latent dimensions), and the masks of the two
hemispheres are not mirror images; voxels outside the ROIs carry noise only. Some units of the
first layer are constant (dead ReLUs).

Modules, in the order the simulation uses them:

- ``templates``: the real events used as templates (:data:`~templates.LAYOUTS`);
- ``signal``: ROI masks, voxel loadings, the haemodynamic response, BOLD runs and the planted
  features;
- ``writers``: the dataset's files (BIDS metadata, masks, BOLD runs, preproc-spm and fMRIPrep
  versions, features, the planted truth, stimulus images);
- ``motion``: ``--motion``, raw runs at per-session placements with head motion, and
  fMRIPrep's minimal outputs;
- ``hierarchy``: ``--hierarchy``, one latent block per layer, each signal voxel carrying one
  block of its ROI's layers (its planted best layer), and two networks built from the blocks in
  layer order (``hierarchical``) and out of order (``mixed``); the layout of their truth files
  ``stimuli/truth_<network>.h5``;
- ``dataset``: :func:`simulate_dataset`, which runs the steps;
- ``command``: the ``bids_decode simulate`` command line.
"""

from bids_decode.simulate.dataset import simulate_dataset

__all__ = ["simulate_dataset"]
