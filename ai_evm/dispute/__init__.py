"""Dispute agents on L1: a web3.py client of the claim registry and its games, and players.

``client`` talks JSON-RPC to any Ethereum node (anvil locally): it sends signed transactions,
decodes reverts by their custom-error names and reads a game's state. ``encode`` turns the
``fraud_vm`` claim and moves into the contracts' ABI values. ``agent`` plays games with a
``fraud_vm.strategies.Player`` (honest or dishonest), reading the whole game from L1 at every poll
so that a killed agent resumes where the game stands. ``aievm dispute ...`` (``ai_evm.cli.dispute``)
and ``aievm replay --game`` are the command-line front ends.
"""
