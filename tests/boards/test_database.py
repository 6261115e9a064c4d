import pytest

from boards.database import BOARDS, ResourceError, check_fits, estimate_resources, get_board
from hw.arch import ArchConfig


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_default_arch_fits_its_board(name):
    board = get_board(name)
    arch = board.default_arch()
    use = check_fits(arch, board)
    assert use["dsp"] <= 0.7 * board.dsp
    assert arch.axi_data_bits == board.axi_data_bits


def test_table_matches_the_part_data():
    zcu102 = get_board("zcu102")
    assert (zcu102.lut, zcu102.ff, zcu102.dsp, zcu102.bram_blocks) == \
        (274_080, 548_160, 2_520, 912)
    ulx3s = get_board("ULX3S-85F")
    assert (ulx3s.dsp, ulx3s.bram_blocks, ulx3s.bram_block_kbits, ulx3s.flow) == \
        (156, 208, 18, "yowasp")


def test_unknown_board_names_the_known_ones():
    with pytest.raises(ValueError,
                       match=r"Unknown board 'zcu999'; known boards are ZCU102, .*PYNQ-Z2"):
        get_board("zcu999")


def test_oversized_arch_is_refused_naming_the_resource():
    big = ArchConfig(conv_pi=16, conv_po=16, pw_pi=32, pw_po=32)
    with pytest.raises(ResourceError, match=r"does not fit board PYNQ-Z2: DSP needs 3,364 but "
                                            r"PYNQ-Z2 has 220; LUT needs"):
        check_fits(big, get_board("PYNQ-Z2"))


def test_shift_based_pes_use_no_dsps():
    arch = ArchConfig(weight_scheme="pot")
    use = estimate_resources(arch)
    assert use["dsp"] == 0 and use["lut"] > estimate_resources(ArchConfig())["lut"]
