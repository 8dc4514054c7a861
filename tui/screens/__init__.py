"""Dialogs and full screens of the TUI."""
