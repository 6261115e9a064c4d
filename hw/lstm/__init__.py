"""Descartes: sparse (CSC) LSTM accelerator — matrix-vector engine with N PEs,
element-wise unit with sigmoid/tanh tables, scheduler, AXI4 master and AXI4-Lite control."""
