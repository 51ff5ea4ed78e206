"""``bids_decode simulate OUT_DIR``: the command line of :func:`simulate_dataset`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from bids_decode.simulate.dataset import simulate_dataset
from bids_decode.simulate.templates import LAYOUTS

LOGGER = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", type=Path, help="new folder for the simulated dataset")
    parser.add_argument("--n-subjects", "--n_subjects", type=int, default=2)
    parser.add_argument("--n-train-runs", "--n_train_runs", type=int, default=20)
    parser.add_argument("--n-test-runs", "--n_test_runs", type=int, default=4)
    parser.add_argument("--n-imagery-runs", "--n_imagery_runs", type=int, default=0)
    parser.add_argument("--preproc-spm", "--preproc_spm", action="store_true",
                        help="also write derivatives/preproc-spm/output runs")
    parser.add_argument("--fmriprep", action="store_true",
                        help="also write fMRIPrep-like derivatives with confounds")
    parser.add_argument("--stimulus-images", "--stimulus_images", action="store_true",
                        help="also write stimulus images (JPEG) into OUT_DIR/stimuli")
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default="ds001246",
                        help="real dataset whose events, sessions and TR are used "
                             "(default ds001246; ds001506: Deep Image Reconstruction, sub-01)")
    parser.add_argument("--motion", action="store_true",
                        help="raw runs at per-session scanner placements with head motion; "
                             "aligned runs in derivatives/preproc-spm, fMRIPrep's minimal "
                             "outputs (boldrefs, ITK transforms) in derivatives/fmriprep")
    parser.add_argument("--snr", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--null-fraction", "--null_fraction", type=float, default=0.0,
                        help="share of each layer's units planted with decodability 0")
    parser.add_argument("--hierarchy", action="store_true",
                        help="a planted brain hierarchy: each signal voxel of V1, V2, V3, V4 "
                             "and HVC carries one layer's latent block, and two more features "
                             "files: network 'hierarchical', whose layers are built from their "
                             "blocks in order (V1 first ... HVC last, for decoding and "
                             "encoding), and 'mixed', out of order; truth in "
                             "stimuli/truth_<network>.h5")


def run_from_args(args: argparse.Namespace) -> int:
    res = simulate_dataset(args.out_dir, n_subjects=args.n_subjects,
                           n_train_runs=args.n_train_runs, n_test_runs=args.n_test_runs,
                           n_imagery_runs=args.n_imagery_runs, preproc_spm=args.preproc_spm,
                           fmriprep=args.fmriprep, stimulus_images=args.stimulus_images,
                           snr=args.snr, seed=args.seed, motion=args.motion,
                           null_fraction=args.null_fraction, layout=args.layout,
                           hierarchy=args.hierarchy)
    print(f"Simulated dataset: {res['bids_dir']}\nFeatures: {res['features']}\n"
          f"Planted truth: {res['bids_dir'] / 'stimuli' / 'truth_simulated.h5'}")
    for net, path in res.get("networks", {}).items():
        print(f"Network {net} (planted hierarchy): {path}")
    return 0
