"""Helpers shared by test modules (not fixtures), one module per part of the system."""
