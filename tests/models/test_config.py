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


def test_spec_for_gives_a_configs_inputs_without_importing_torch():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from xsearch.models.config import spec_for\n"
        "spec = spec_for('audioclip')\n"
        "assert 'torch' not in sys.modules, 'spec_for imported torch'\n"
        "print(spec.dim, spec.audio.sample_rate, spec.image.size, ','.join(spec.modalities))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1024", "44100", "224", "image,audio,text"]


def test_spec_for_follows_each_config():
    from xsearch.models.config import spec_for, spec_of

    for name in available_configs():
        cfg = get_config(name)
        spec = spec_for(name)
        assert spec == spec_of(cfg) and spec.config == name
        assert spec.image is not None and spec.image.size == cfg.vision.image_size
    with pytest.raises(UsageError, match=r"unknown model .nope.; known models"):
        spec_for("nope")
