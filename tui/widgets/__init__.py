"""Widgets of the TUI: they draw data they are given and never read files."""
