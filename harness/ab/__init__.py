"""`harness ab`: the scenario at the base ref against the working tree, measured interleaved.

`sides` resolves what each side runs (a git worktree of the base ref, or a second scenario
file), `schedule` orders the measurements in ABBA blocks, `blocks` drives the load slots with
both servers up, `decide` turns paired block log-ratios into verdicts (the one policy), `runner`
ties them together and `record` is the typed result every report reads.
"""
