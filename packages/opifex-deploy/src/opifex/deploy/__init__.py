"""Export, serving, canary roll-out and rollback of trained opifex solvers."""
