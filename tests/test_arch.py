import json

import pytest

from hw.arch import ArchConfig


def test_round_trip_and_hash(tmp_path):
    arch = ArchConfig(conv_pi=8, name="x")
    path = tmp_path / "arch.json"
    path.write_text(arch.to_json())
    again = ArchConfig.from_json(path)
    assert again == arch
    assert again.config_hash == arch.config_hash
    assert ArchConfig(conv_pi=8, name="other").config_hash == arch.config_hash  # name excluded
    assert ArchConfig(conv_pi=4).config_hash != arch.config_hash


@pytest.mark.parametrize("kwargs, error, message", [
    ({"act_bits": 1}, ValueError, r"act_bits must be between 2 and 16, not 1"),
    ({"act_bits": 8.0}, TypeError, r"act_bits must be an integer, not 8\.0"),
    ({"conv_pi": 0}, ValueError, r"conv_pi must be between 1 and 256, not 0"),
    ({"conv_k_max": 4}, ValueError, r"conv_k_max must be one of \(1, 3, 5, 7\), not 4"),
    ({"weight_scheme": "ternary"}, ValueError, r"weight_scheme must be one of uniform, pot, apot, not 'ternary'"),
    ({"acc_bits": 12}, ValueError, r"acc_bits must be at least act_bits \+ weight_bits \(16\), not 12"),
    ({"axi_data_bits": 48}, ValueError, r"axi_data_bits must be one of 32, 64, 128, 256, 512, not 48"),
])
def test_bad_parameters_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        ArchConfig(**kwargs)


def test_unknown_and_malformed_files(tmp_path):
    path = tmp_path / "arch.json"
    path.write_text(json.dumps({"conv_pi": 4, "pies": 3}))
    with pytest.raises(ValueError, match=r"Unknown arch parameter\(s\) pies"):
        ArchConfig.from_json(path)
    path.write_text("{nope")
    with pytest.raises(ValueError, match=r"arch.json is not valid JSON"):
        ArchConfig.from_json(path)
    with pytest.raises(ValueError, match=r"does not exist"):
        ArchConfig.from_json(tmp_path / "missing.json")
