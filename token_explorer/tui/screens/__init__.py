"""Screens: loading, help, prompt browser."""
