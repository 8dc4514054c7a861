"""Backprop governor: decides when and where a run may start."""
