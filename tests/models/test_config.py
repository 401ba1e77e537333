import pytest

from xsearch.errors import UsageError
from xsearch.models.config import available_configs, get_config


def test_registry_lists_official_and_tiny():
    assert {"audioclip", "audioclip-tiny"} <= set(available_configs())


def test_official_config_matches_the_paper_architecture():
    cfg = get_config("audioclip")
    assert cfg.embed_dim == 1024
    assert cfg.vision.layers == (3, 4, 6, 3) and cfg.vision.image_size == 224
    assert (cfg.text.context_length, cfg.text.width, cfg.text.layers) == (77, 512, 12)
    a = cfg.audio
    assert (a.sample_rate, a.n_fft, a.win_length, a.hop_length) == (44100, 2048, 1654, 561)
    assert (a.groups, a.width_per_group, a.n_bins) == (32, 4, 1025)


def test_unknown_config_names_the_known_ones():
    with pytest.raises(UsageError, match="audioclip-tiny"):
        get_config("clap")
