"""The ``bids_decode features`` subcommand: its defaults, and runs on real photos."""

from __future__ import annotations

import argparse

import numpy as np

from bids_decode.features import command
from bids_decode.features.networks import NETWORKS
from tests.features.helpers import read_features


def _parse(argv):
    parser = argparse.ArgumentParser(prog="bids_decode features")
    command.add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_defaults():
    args = _parse(["stim", "out.h5"])
    assert (args.network, args.layers, args.weights, args.device, args.batch_size, args.seed,
            args.names_from) == ("alexnet", None, None, "cpu", 16, 0, None)


def test_photos_end_to_end_through_the_cli_hook(photos, tmp_path):
    out = tmp_path / "photos.h5"
    code = command.run_from_args(
        _parse([str(photos), str(out), "--weights", "random", "--batch-size", "2"])
    )
    assert code == 0
    names, layers, _, attrs = read_features(out)
    assert names == ["astronaut", "camera", "chelsea", "coffee", "rocket"]
    assert list(layers) == list(NETWORKS["alexnet"].layers)
    for layer, values in layers.items():
        assert np.isfinite(values).all(), layer
        assert values.reshape(5, -1).std(axis=0).max() > 0, layer  # images differ
    assert attrs["weights"] == "random"


def test_photos_named_by_an_events_file(photos, tmp_path):
    events = tmp_path / "events.tsv"
    events.write_text("onset\tduration\tstim_file\n0\t9\tcoffee.JPEG\n9\t9\tn/a\n"
                      "18\t9\tstimuli/rocket.jpg\n")
    out = tmp_path / "two.h5"
    command.run_from_args(_parse([str(photos), str(out), "--weights", "random",
                                   "--names-from", str(events), "--layers", "fc7", "conv2"]))
    names, layers, _, _ = read_features(out)
    assert names == ["coffee.JPEG", "stimuli/rocket.jpg"]
    assert list(layers) == ["conv2", "fc7"] and layers["fc7"].shape == (2, 4096)
