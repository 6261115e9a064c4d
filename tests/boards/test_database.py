import pytest

from boards.database import (
    _ARCH_TIERS,
    BOARDS,
    ResourceError,
    _buffer_sizes,
    check_fits,
    estimate_resources,
    get_board,
)
from hw.arch import ArchConfig


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_default_arch_fits_its_board(name):
    board = get_board(name)
    arch = board.default_arch()
    use = check_fits(arch, board)
    for resource, have in board.budget.items():
        assert use[resource] <= 0.7 * have, (resource, use[resource], have)
    assert arch.axi_data_bits == board.axi_data_bits
    # the next larger engine tier does not fit at any buffer size
    tiers = [t for t in _ARCH_TIERS if t[0] * t[1] > arch.conv_pi * arch.conv_po]
    if tiers:
        pi, po, pw, dw = tiers[-1]
        for buf in _buffer_sizes(board):
            bigger = arch.replace(conv_pi=pi, conv_po=po, pw_pi=pw, pw_po=pw, dw_channels=dw,
                                  ibuf_bytes=buf, obuf_bytes=buf,
                                  wbuf_bytes=max(buf // 2, 8192))
            use = estimate_resources(bigger, family=board.synth_family)
            assert any(use[r] > 0.7 * have for r, have in board.budget.items())


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
    with pytest.raises(ResourceError, match=r"does not fit board PYNQ-Z2: DSP needs [\d,]+ "
                                            r"but PYNQ-Z2 has 220; LUT needs .*BRAM36 needs"):
        check_fits(big, get_board("PYNQ-Z2"))


def test_shift_based_pes_use_no_dsps():
    arch = ArchConfig(weight_scheme="pot")
    use, uniform = estimate_resources(arch), estimate_resources(ArchConfig())
    # the MACs' DSP slices go; the requantizers' stay
    assert use["dsp"] == uniform["dsp"] - uniform["mac_units"]
    assert use["lut"] > uniform["lut"]
