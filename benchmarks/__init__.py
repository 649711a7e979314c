"""nbflow's benchmark harness: nbflow vs. plain asyncio and peers, in one run (issue 9).

Run ``python -m benchmarks`` from the repository root; see ``benchmarks/README.md``.
"""
