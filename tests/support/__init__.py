"""Helpers for hil's own tests only (users' tests find theirs in hil.testing); imported as tests.support.*."""
