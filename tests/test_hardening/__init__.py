"""Bad inputs and data leakage: every error names what is at fault."""
