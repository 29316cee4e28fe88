"""The settings: grouped, each with a one-line help, experimental ones named in one place and
used by no preset."""

import pytest

from kp_tf import config


def test_every_setting_has_a_group_and_a_one_line_help():
    for name, field in config.FIELDS.items():
        assert field.metadata["group"] in config.GROUPS, name
        text = field.metadata["help"]
        assert "\n" not in text and len(text) <= 100, (name, len(text))


def test_experimental_settings_are_settings_that_no_preset_uses():
    assert config.EXPERIMENTAL <= set(config.FIELDS)
    for preset in config.available_presets():
        values = config.read_flagfile(config.flags_dir() / f"{preset}.flags")
        assert not config.EXPERIMENTAL & set(values), preset


def test_grouped_help_lists_every_setting_once_under_its_group():
    text = config.grouped_help()
    for name in config.FIELDS:
        assert text.count(f"--{name}:") == 1, name
    sections = [line.strip()[:-1] for line in text.splitlines() if line.startswith("  ")
                and not line.startswith("    ")]
    assert sections == list(config.GROUPS) + ["experimental"]
    assert text.index("--kl_free_bits:") > text.index("  experimental:")
    assert config.help_text("xla").startswith("[experimental] ")


def test_perceptual_scales_are_read_as_pooling_factors_and_a_bad_one_names_the_flag():
    assert config.Config(perceptual_scales="1,2,4").perceptual_scale_list == [1, 2, 4]
    assert config.Config().perceptual_scale_list == [1]
    with pytest.raises(ValueError, match="--perceptual_scales: .*'1,half'"):
        config.Config(perceptual_scales="1,half").perceptual_scale_list
