"""The editing benchmark on the shapes world: suites, per-edit metrics, runner and reports."""
