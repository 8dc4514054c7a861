"""Backprop terminal UI and command line."""
