"""Imports fine, but holds no job function: ``NOT_A_FUNCTION`` cannot be called."""

NOT_A_FUNCTION = 42
