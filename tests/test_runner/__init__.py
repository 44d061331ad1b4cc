"""The test runner: multi-split tests, distributed runs, atomic files."""
