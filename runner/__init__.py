"""Backprop runner: launches, supervises and records training runs (never imports textual)."""
