"""The fraud VM: one graph node as a program of small instructions over Merkle-committed memory.

``fraud_vm.trace.NodeTrace`` runs and fast-forwards a node, ``fraud_vm.vm.verify_step`` checks
one step from its witness alone; ``docs/fraud_vm.md`` is the specification.
"""
