"""Reusable CDK constructs, one concern each (secure bucket, Python function, nag acknowledgments, ...)."""
