"""Integrations with graph libraries (optional extras)."""
