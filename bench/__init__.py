"""mk1's benchmarks: each figure measured beside its physical floor and a peer.

    python -m bench            # the full run (writes docs/BENCHMARKS.md numbers, docs/bench/*.png)
    python -m bench --quick    # a short run (< 2 min); results in .mk1/bench/
    python -m bench --selftest # figure 1 with 20 calls; exits 0 when it works

See docs/BENCHMARKS.md for what each figure is and how it is measured.
"""
