"""The rollup: how L2 blocks travel through L1 and come back (``docs/rollup.md``).

``codec``: batches, channels and frames (the batch format); ``blobs``: frames in EIP-4844 blobs;
``derive``: the L2 chain as a pure function of L1 data (channel bank, batch validity).
"""
