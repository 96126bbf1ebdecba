"""Network: S4D, blocks, hierarchical U-Net, multi-task heads."""
